// libedit's readline-compatible API (Debian libedit-dev): line editing,
// history and completion for the REPL.
#include <stdio.h>
#include <editline/readline.h>

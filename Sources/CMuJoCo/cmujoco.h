// MuJoCo's C API (Debian libmujoco-dev 2.2.2).
#include <mujoco/mujoco.h>

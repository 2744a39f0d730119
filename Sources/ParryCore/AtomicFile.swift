import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Files replaced whole: checkpoints, run records, bundles and installs.
///
/// A reader — or the next run after a `kill -9` in the middle of a write —
/// sees the old file or the new one, never a part, and no litter is left
/// for long:
/// 1. the bytes go to `.NAME.tmp-PID-N` beside the target (same directory,
///    so the rename cannot cross file systems);
/// 2. the temporary is `fsync`ed, renamed over the target, and then the
///    directory is `fsync`ed so the rename itself is durable;
/// 3. on every error path the temporary is removed;
/// 4. before each write, temporaries of the same target left by writers that
///    no longer run (their PID is dead) are removed.
///
/// ```swift
/// try AtomicFile.write(to: "out/ck.safetensors") { w in try w.write(header); try w.write(blob) }
/// ```
public enum AtomicFile {
    /// An error writing `path`, with the system's reason.
    public struct WriteError: Error, CustomStringConvertible {
        public let description: String
        init(_ path: String, _ what: String, errno e: Int32) {
            description = "\(path): \(what) (\(String(cString: strerror(e))))"
        }
    }

    /// The open temporary file; `write` loops until every byte is written.
    public struct Writer {
        let fd: Int32
        let path: String
        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard var p = bytes.baseAddress else { return }
            var left = bytes.count
            while left > 0 {
                let n = Glibc.write(fd, p, Swift.min(left, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw WriteError(path, "cannot write", errno: errno)
                }
                p += n
                left -= n
            }
        }
        public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }
        public func write(_ text: String) throws { try write(Data(text.utf8)) }
    }

    private static let counter = Locked<Int>(0)

    /// Writes the target through `body`; see the type's documentation.
    public static func write(to path: String, _ body: (Writer) throws -> Void) throws {
        let (dir, name) = split(path)
        removeStale(in: dir, target: name)
        let tmp = "\(dir)/" + temporaryName(for: name)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw WriteError(path, "cannot write", errno: errno) }
        var done = false
        defer { if !done { unlink(tmp) } }
        do {
            try body(Writer(fd: fd, path: path))
            guard fsync(fd) == 0 else { throw WriteError(path, "cannot write", errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw WriteError(path, "cannot write", errno: errno) }
        guard rename(tmp, path) == 0 else { throw WriteError(path, "cannot move the written file into place", errno: errno) }
        done = true
        syncDirectory(dir)
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { try $0.write(data) }
    }

    /// Renames `from` over `to` (a file or a directory made beside it) and
    /// makes the rename durable by syncing the target's directory.
    public static func replace(_ from: String, with to: String) throws {
        guard rename(from, to) == 0 else { throw WriteError(to, "cannot move \(from) into place", errno: errno) }
        syncDirectory(split(to).dir)
    }

    /// The name a temporary for `target` in `dir` starts with (for writers
    /// that build a directory and `replace` it into place).
    public static func temporaryName(for target: String) -> String {
        let n = counter.withLock { c -> Int in c += 1; return c }
        return ".\(target).tmp-\(getpid())-\(n)"
    }

    /// Removes `.TARGET.tmp-PID-…` entries in `dir` whose PID is not running
    /// (files, or folders of an interrupted install). This process's own and
    /// live processes' temporaries are left alone.
    public static func removeStale(in dir: String, target: String) {
        let prefix = ".\(target).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for entry in names where entry.hasPrefix(prefix) {
            let rest = entry.dropFirst(prefix.count)
            guard let pid = Int32(rest.prefix { $0.isNumber }), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }      // alive (EPERM: alive, not ours)
            try? FileManager.default.removeItem(atPath: "\(dir)/\(entry)")
        }
    }

    static func split(_ path: String) -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

/// A whole regular file's bytes through open/fstat/read (Foundation's
/// FileManager.contents(atPath:) leaks a 4 KB buffer on some inputs, as the
/// safetensors fuzz target's LeakSanitizer run showed). nil: no such file,
/// not a regular file, or unreadable.
public func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
    var out = [UInt8](repeating: 0, count: Int(st.st_size))
    var done = 0
    while done < out.count {
        let n = out.withUnsafeMutableBytes { buf in buf.baseAddress.map { Foundation.read(fd, $0 + done, buf.count - done) } ?? 0 }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        done += n
    }
    return done == out.count ? out : Array(out.prefix(done))
}

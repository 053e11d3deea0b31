//! Request counters: how many FUSE requests of each kind ctrfsd answered, and the errors it
//! answered by errno. Read at any time with `getfattr -n user.ctrfsd.requests /ctr` (the mount
//! root), and logged when ctrfsd stops. Counts explain speed better than times: they do not
//! drift with the machine.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The requests counted, in report order.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `lookup`.
    Lookup,
    /// `forget`.
    Forget,
    /// `getattr`.
    Getattr,
    /// `readlink`.
    Readlink,
    /// `open`.
    Open,
    /// `read`.
    Read,
    /// `release`.
    Release,
    /// `opendir`.
    Opendir,
    /// `readdir`.
    Readdir,
    /// `readdirplus`.
    Readdirplus,
    /// `statfs`.
    Statfs,
    /// `getxattr`.
    Getxattr,
    /// `listxattr`.
    Listxattr,
    /// `access`.
    Access,
    /// Anything that would write (answered EROFS).
    Write,
    /// `lseek` (`SEEK_DATA`/`SEEK_HOLE`).
    Lseek,
}

const OPS: [(Op, &str); 16] = [
    (Op::Lookup, "lookup"),
    (Op::Forget, "forget"),
    (Op::Getattr, "getattr"),
    (Op::Readlink, "readlink"),
    (Op::Open, "open"),
    (Op::Read, "read"),
    (Op::Release, "release"),
    (Op::Opendir, "opendir"),
    (Op::Readdir, "readdir"),
    (Op::Readdirplus, "readdirplus"),
    (Op::Statfs, "statfs"),
    (Op::Getxattr, "getxattr"),
    (Op::Listxattr, "listxattr"),
    (Op::Access, "access"),
    (Op::Write, "write-refused"),
    (Op::Lseek, "lseek"),
];

/// Errnos above this are counted together.
const MAX_ERRNO: usize = 160;

/// Requests answered by kind, and errors by errno, since the mount.
pub struct Stats {
    /// One counter per [`Op`], in report order.
    ops: [AtomicU64; OPS.len()],
    /// One counter per errno (the last one counts every errno above it).
    errors: [AtomicU64; MAX_ERRNO + 1],
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            ops: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stats {
    /// Counts one request of kind `op`.
    pub fn op(&self, op: Op) {
        self.ops[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error answer `errno`.
    pub fn error(&self, errno: i32) {
        let i = usize::try_from(errno).unwrap_or(0).min(MAX_ERRNO);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// One `name count` per line, requests first (with their total), then errors; zeros left out.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let counts: Vec<(&str, u64)> = OPS
            .iter()
            .map(|(op, name)| (*name, self.ops[*op as usize].load(Ordering::Relaxed)))
            .collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let _ = writeln!(out, "requests {total}");
        for (name, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            let _ = writeln!(out, "{name} {n}");
        }
        for (errno, n) in self.errors.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "error {} {n}", errno_name(errno as i32));
            }
        }
        out
    }
}

/// The symbolic name of the errnos ctrfsd answers with.
fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ESTALE => "ESTALE",
        libc::ENOMEDIUM => "ENOMEDIUM",
        _ => return format!("errno{e}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_what_was_counted() {
        let s = Stats::default();
        s.op(Op::Lookup);
        s.op(Op::Lookup);
        s.op(Op::Read);
        s.error(libc::ENOENT);
        s.error(9999);
        assert_eq!(
            s.report(),
            "requests 3\nlookup 2\nread 1\nerror ENOENT 1\nerror errno160 1\n"
        );
    }
}

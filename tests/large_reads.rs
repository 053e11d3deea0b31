//! Sequential reads come through ctrfsd in 1 MiB requests (the mount's readahead is raised to
//! what one FUSE request may carry, src/mountpoint.rs `set_readahead`), not the kernel's
//! default 128 KiB: 8 times fewer round trips for a large file. Counted, not timed.

mod common;

use std::fs;

use common::*;

#[test]
fn a_sequential_read_of_16_mib_takes_about_16_requests() {
    const MIB: usize = 1 << 20;
    let c = FakeContainer::start(
        |r| {
            let data: Vec<u8> = (0..16 * MIB).map(|i| (i % 251) as u8).collect();
            fs::write(r.join("big"), data).unwrap();
        },
        "",
    );
    let d = serve(&c, "lr");
    let f = d.path().join("lr/big");
    let before = request_counts(d.path()).get("read").copied().unwrap_or(0);
    let out = sh(&format!("dd if={} of=/dev/null bs=1M", f.display()));
    assert!(out.status.success(), "{out:?}");
    let reads = request_counts(d.path()).get("read").copied().unwrap_or(0) - before;
    // 16 at 1 MiB each, a few more if a request is split at the readahead window's edges;
    // 128 at the kernel's default.
    assert!(reads <= 24, "{reads} read requests for 16 MiB");
    assert_eq!(
        fs::read(&f).unwrap(),
        fs::read(c.root().join("big")).unwrap()
    );
}

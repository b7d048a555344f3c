//! `cargo xtask package`: lb as a Debian package, built with `dpkg-deb` (Debian's own
//! packager, present wherever the result can be installed) from the files in
//! `packaging/`: the binary, the systemd unit, a default `/etc/lb/lb.toml` (a conffile),
//! shell completions, a logrotate rule, and maintainer scripts that make the `lb` system
//! user and its directories.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cargo, cmd, workspace_root};

#[derive(clap::Args)]
pub struct PackageArgs {
    /// Package this lb binary instead of building a release one (tests package the
    /// debug build they already have).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where the .deb goes.
    #[arg(long, default_value = "target/debian")]
    pub out: PathBuf,
}

/// Builds the package; returns its path.
pub fn package(args: &PackageArgs) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            cargo(&["build", "--release", "-p", "lb-userspace", "--bin", "lb"])?;
            root.join("target/release/lb")
        }
    };
    if !binary.is_file() {
        bail!("{}: no lb binary there", binary.display());
    }
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    let version = version(&binary)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture (is this Debian?)")?;
    let stage = out.join(format!("lb_{version}_{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    let packaging = root.join("packaging");
    let put = |from: &Path, to: &str, mode: u32| -> anyhow::Result<()> {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("a file in a directory"))?;
        std::fs::copy(from, &dest)
            .with_context(|| format!("{} -> {}", from.display(), dest.display()))?;
        set_mode(&dest, mode)
    };
    put(&binary, "usr/bin/lb", 0o755)?;
    // Debian ships binaries without debug info (and a debug build is 200 MB with it).
    cmd(Command::new("strip")
        .arg("--strip-debug")
        .arg(stage.join("usr/bin/lb")))?;
    put(
        &packaging.join("lb.service"),
        "lib/systemd/system/lb.service",
        0o644,
    )?;
    put(&packaging.join("lb.toml"), "etc/lb/lb.toml", 0o644)?;
    put(&packaging.join("logrotate"), "etc/logrotate.d/lb", 0o644)?;
    put(&root.join("README.md"), "usr/share/doc/lb/README.md", 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        put(&packaging.join(script), &format!("DEBIAN/{script}"), 0o755)?;
    }
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/lb"),
        ("zsh", "usr/share/zsh/vendor-completions/_lb"),
        ("fish", "usr/share/fish/vendor_completions.d/lb.fish"),
    ] {
        let script = output(Command::new(&binary).args(["completions", shell]))?;
        let dest = stage.join(path);
        std::fs::create_dir_all(dest.parent().expect("a file in a directory"))?;
        std::fs::write(&dest, script + "\n")?;
    }
    std::fs::write(
        stage.join("DEBIAN/conffiles"),
        "/etc/lb/lb.toml\n/etc/logrotate.d/lb\n",
    )?;
    let installed_kib = du_kib(&stage)?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: lb\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: lb developers <lb@localhost>\n\
             Installed-Size: {installed_kib}\n\
             Depends: libc6, passwd\n\
             Recommends: systemd\n\
             Section: net\n\
             Priority: optional\n\
             Homepage: https://localhost/lb\n\
             Description: L7 load balancer with eBPF health signals\n \
             lb proxies HTTP/1.1 and HTTP/2 to origin groups with CloudFront's failover\n \
             semantics, health from kernel (XDP and tracepoints), passive and active\n \
             signals, a cache that serves stale copies when origins fail, and edge\n \
             rules and functions. It reads its own TOML or a CloudFront\n \
             DistributionConfig.\n"
        ),
    )?;
    let deb = out.join(format!("lb_{version}_{arch}.deb"));
    cmd(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb))?;
    println!("{}", deb.display());
    Ok(deb)
}

/// The package version: lb's own, with the commit it was built from (`lb --version`
/// prints `lb 0.1.0 (abc1234)`).
fn version(binary: &Path) -> anyhow::Result<String> {
    let printed = output(Command::new(binary).arg("--version"))?;
    let mut words = printed.split_whitespace().skip(1);
    let base = words.next().context("lb --version printed no version")?;
    let commit = words
        .next()
        .map(|c| c.trim_matches(['(', ')']))
        .filter(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric()) && !c.is_empty());
    Ok(match commit {
        Some(c) => format!("{base}+git{c}"),
        None => base.to_owned(),
    })
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .with_context(|| format!("spawning {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Installed size in KiB, as the control file states it.
fn du_kib(dir: &Path) -> anyhow::Result<u64> {
    fn walk(p: &Path) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(p)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += if meta.is_dir() {
                walk(&entry.path())?
            } else {
                meta.len()
            };
        }
        Ok(total)
    }
    Ok(walk(dir)?.div_ceil(1024))
}

//! A private Redis Cluster for tests and benchmarks: Debian's `redis-server`
//! started six times on free loopback ports (three masters, three
//! replicas), joined with `redis-cli --cluster create`, and torn down when
//! dropped. Persistence is off (the tests measure the cluster's
//! replication, not its disks) and the node timeout is short, so a killed
//! master fails over within seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

/// Milliseconds before the cluster declares a silent node failed.
pub const NODE_TIMEOUT_MS: u64 = 1_500;

/// A running Redis Cluster.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<(u16, Option<Child>)>,
}

impl RedisCluster {
    /// Starts three masters with one replica each.
    pub fn start() -> anyhow::Result<RedisCluster> {
        for program in ["redis-server", "redis-cli"] {
            if Command::new(program).arg("--version").output().is_err() {
                bail!(
                    "{program} is not installed: run scripts/test (which installs it) or apt-get install redis-server"
                );
            }
        }
        let dir = tempfile::Builder::new().prefix("starling-redis-").tempdir()?;
        let mut cluster = RedisCluster { dir, nodes: Vec::new() };
        while cluster.nodes.len() < 6 {
            // A port found free may be taken by another test before this
            // server binds it: then this server exits, and another port is
            // tried. A cluster node also listens on its port + 10,000.
            let mut port = free_port();
            while port > 55_535 {
                port = free_port();
            }
            let mut child = cluster.launch(port)?;
            if wait_for(port, Duration::from_secs(10)).is_ok() && child.try_wait()?.is_none() && cluster.owns(port) {
                cluster.nodes.push((port, Some(child)));
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let addresses: Vec<String> = cluster.nodes.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        if !output.status.success() {
            bail!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&output.stdout));
        }
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Whether the server on `port` is this cluster's (its directory).
    fn owns(&self, port: u16) -> bool {
        let dir = self.dir.path().join(port.to_string());
        self.cli(port, &["CONFIG", "GET", "dir"]).is_ok_and(|out| out.contains(&dir.display().to_string()))
    }

    fn launch(&self, port: u16) -> anyhow::Result<Child> {
        let node_dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir)?;
        let config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ncluster-enabled yes\ncluster-config-file nodes.conf\n\
             cluster-node-timeout {NODE_TIMEOUT_MS}\ncluster-replica-validity-factor 0\nrepl-ping-replica-period 1\n\
             appendonly no\nsave \"\"\ndir {dir}\nlogfile {dir}/redis.log\ndaemonize no\n",
            dir = node_dir.display()
        );
        std::fs::write(node_dir.join("redis.conf"), config)?;
        Command::new("redis-server")
            .arg(node_dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server")
    }

    /// The seed addresses agents of the cluster take: `redis://127.0.0.1:P,…`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        format!("redis://{}", seeds.join(","))
    }

    /// The ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .filter(|(port, _)| self.cli(*port, &["ROLE"]).is_ok_and(|out| out.starts_with("master")))
            .map(|(port, _)| *port)
            .collect()
    }

    /// Runs `redis-cli -p PORT ARGS…` and answers its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        let output =
            Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output()?;
        if !output.status.success() {
            bail!("redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills one node with SIGKILL (a crashed server).
    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.nodes {
            if *p == port
                && let Some(mut child) = child.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Waits until every slot is served again (after a failover).
    pub fn wait_ok(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let alive: Vec<u16> = self.nodes.iter().filter(|(_, c)| c.is_some()).map(|(p, _)| *p).collect();
            let ok = alive
                .iter()
                .all(|port| self.cli(*port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok")));
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the Redis Cluster did not reach cluster_state:ok within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Bytes of memory the cluster's masters use for data (`used_memory`
    /// minus `used_memory_startup`, summed).
    pub fn data_memory(&self) -> u64 {
        self.masters()
            .iter()
            .map(|port| {
                let info = self.cli(*port, &["INFO", "memory"]).unwrap_or_default();
                let field = |name: &str| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}:")))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                field("used_memory").saturating_sub(field("used_memory_startup"))
            })
            .sum()
    }

    /// The directory of the nodes' files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A node's log.
    pub fn log(&self, port: u16) -> PathBuf {
        self.dir.path().join(port.to_string()).join("redis.log")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn wait_for(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            bail!("redis-server on port {port} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

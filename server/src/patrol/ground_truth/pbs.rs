//! The Proxmox Backup Server part of the ground-truth fleet: datastores, jobs, backup groups
//! and the host's own node.

use super::*;

impl Gen {
    pub(super) fn pbs(&mut self) {
        self.agent(PBS, &["host", "pbs"]);
        let host = self.host_node(PBS, 16.0, 8.0);
        let read = self.run_ms(PBS, "pbs");
        for (store, total) in [
            ("store1", 16.0 * TIB),
            ("archive", 24.0 * TIB),
            ("fast", 4.0 * TIB),
        ] {
            let id = format!("pbs-datastore:{PBS}/{store}");
            // Jobs: (label, minute of day it runs daily, or hourly when None).
            let mut jobs = vec![
                ("gc".to_owned(), Some(150)),
                (format!("prune/p-{store}"), Some(120)),
                (format!("verify/v-{store}"), Some(300)),
            ];
            if store == "store1" {
                jobs.push(("sync/s-offsite".to_owned(), None));
            }
            let mut attrs = json!({"backend": "filesystem", "maintenance": null});
            let mut ok = Vec::new();
            for (job, minute) in &jobs {
                let failed = match (store, job.as_str()) {
                    ("fast", "gc") => self.has(Trouble::PbsGcFailed),
                    ("fast", "verify/v-fast") => self.has(Trouble::PbsVerifyFailed),
                    ("store1", "sync/s-offsite") => self.has(Trouble::PbsSyncFailed),
                    _ => false,
                };
                let state = match (failed, job.split('/').next().unwrap_or_default()) {
                    (false, _) => "OK".to_owned(),
                    (true, "gc") => "TASK ERROR: unable to read chunk directory \
                                     \"/mnt/datastore/fast/.chunks/3a4f\" - EIO: I/O error"
                        .to_owned(),
                    (true, "verify") => "TASK ERROR: verification failed - please check the \
                                         log for details (2 snapshots with corrupt chunks)"
                        .to_owned(),
                    (true, _) => "TASK ERROR: error trying to connect to remote 'offsite': \
                                  connection refused"
                        .to_owned(),
                };
                attrs[format!("{job}_last_state")] = json!(state);
                let ended = match minute {
                    Some(m) => last_daily(read, *m) + 20 * MIN,
                    None => read.div_euclid(HOUR) * HOUR - HOUR + 7 * MIN,
                };
                let ended = if ended > read { ended - DAY } else { ended };
                ok.push((job.clone(), !failed, (read - ended) / 1000));
            }
            let j = self.add(PBS, "pbs", &id, store, None, "available", attrs);
            let level = self.rng.range(30.0, 58.0);
            let mut s = self.shape(level, 0.8, 0.2);
            s.peak_hour = 4.0;
            s.wobble = 0.3;
            if store == "archive" && self.has(Trouble::BackupTargetFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, metric::DATASTORE_USED_PCT, s);
            self.gauge(j, metric::DATASTORE_TOTAL_BYTES, total);
            self.gauge(j, metric::DATASTORE_USED_BYTES, total * pct / 100.0);
            // The host collector sees the datastore's filesystem where PBS mounts it.
            let m = |name: &str| format!("{name}{{mount=\"/mnt/datastore/{store}\"}}");
            self.gauge(host, &m(metric::FS_TOTAL_BYTES), total);
            self.gauge(host, &m(metric::FS_USED_BYTES), total * pct / 100.0);
            self.gauge(host, &m(metric::FS_USED_PCT), pct);
            let v = self.rng.range(6.0, 22.0);
            self.gauge(j, metric::DATASTORE_DEDUP_FACTOR, v);
            let v = self.rng.range(400.0, 2000.0);
            self.gauge(j, metric::DATASTORE_DAYS_TO_FULL, v);
            let failed_tasks = ok.iter().filter(|(_, good, _)| !good).count();
            for (job, good, age_s) in ok {
                self.gauge(
                    j,
                    &metric::labelled(metric::JOB_LAST_OK, "job", &job),
                    f64::from(u8::from(good)),
                );
                self.gauge(
                    j,
                    &metric::labelled(metric::JOB_LAST_RUN_AGE_SECONDS, "job", &job),
                    age_s as f64,
                );
            }
            self.gauge(j, metric::TASKS_FAILED_24H, failed_tasks as f64);
            let groups = self.backup_groups(store, &id, read);
            self.gauge(j, metric::SNAPSHOTS_TOTAL, (groups * 9) as f64);
            self.gauge(j, metric::SNAPSHOTS_VERIFY_FAILED, 0.0);
            self.gauge(j, metric::SNAPSHOTS_UNVERIFIED, groups as f64);
        }
        self.snap.resources[host].attrs["filesystems"] = json!(5);
        if self.has(Trouble::PbsEstimateFull) {
            self.vault();
        }
    }

    /// The datastore `vault` of [`Trouble::PbsEstimateFull`]: reported for 4 hours, without
    /// jobs or backups of this fleet's guests yet. Draws nothing from the fleet's randomness.
    fn vault(&mut self) {
        self.born_ms = self.now - 4 * HOUR;
        let id = format!("pbs-datastore:{PBS}/vault");
        let j = self.add(
            PBS,
            "pbs",
            &id,
            "vault",
            None,
            "available",
            json!({"backend": "filesystem", "maintenance": null}),
        );
        let shape = Shape {
            level: 64.0,
            per_day: 0.0,
            daily: 0.0,
            peak_hour: 0.0,
            wobble: 0.1,
            noise: 0.2,
            step: None,
            bump: None,
            key: hash("vault"),
        };
        let total = 8.0 * TIB;
        let pct = self.pct(j, metric::DATASTORE_USED_PCT, shape);
        self.gauge(j, metric::DATASTORE_TOTAL_BYTES, total);
        self.gauge(j, metric::DATASTORE_USED_BYTES, total * pct / 100.0);
        self.gauge(j, metric::DATASTORE_DAYS_TO_FULL, 5.5);
        self.gauge(j, metric::TASKS_FAILED_24H, 0.0);
        self.born_ms = i64::MIN;
    }

    /// The backup groups of one datastore; returns how many.
    fn backup_groups(&mut self, store: &str, ds: &str, read: i64) -> usize {
        let mut groups: Vec<(String, String, f64)> = Vec::new();
        let guests =
            (FIRST_VMID..FIRST_VMID + GUESTS).filter(|v| !TEMPLATES.contains(v) && *v != NEW_GUEST);
        for vmid in guests {
            let target = match backup_storage(vmid) {
                "pbs" => "store1",
                "pbs-archive" => "archive",
                _ => continue,
            };
            if target != store || (vmid == 103 && self.has(Trouble::BackupFrozen)) {
                continue;
            }
            let dir = if guest_kind(vmid) == "lxc" {
                "ct"
            } else {
                "vm"
            };
            let minute = if target == "archive" {
                210
            } else {
                backup_minute(vmid)
            };
            let mut newest = last_daily(read - 15 * MIN, minute);
            if self.has(Trouble::BackupTargetFull) && target == "archive" {
                newest = read - 3 * DAY - 12 * HOUR;
            }
            groups.push((
                dir.into(),
                vmid.to_string(),
                (read - newest) as f64 / 1000.0,
            ));
        }
        if store == "fast" {
            for host in DOCKER_HOSTS {
                let newest = last_daily(read, 30);
                groups.push(("host".into(), host.into(), (read - newest) as f64 / 1000.0));
            }
        }
        for (dir, backup_id, age) in &groups {
            let j = self.add(
                PBS,
                "pbs",
                &format!("backup:{PBS}/{store}/{dir}/{backup_id}"),
                &format!("{dir}/{backup_id}"),
                Some(ds),
                "verified",
                json!({
                    "backup_type": dir,
                    "backup_id": backup_id,
                    "guest_kind": match dir.as_str() { "vm" => json!("vm"), "ct" => json!("lxc"), _ => Value::Null },
                    "comment": null,
                    "last_verification": "ok",
                }),
            );
            self.gauge(j, metric::BACKUP_LAST_AGE_SECONDS, *age);
            self.gauge(j, metric::BACKUP_COUNT, 9.0);
            let v = self.rng.range(2.0, 60.0) * GIB;
            self.gauge(j, metric::BACKUP_SIZE_BYTES, v);
        }
        groups.len()
    }

    /// A machine's own node as the host collector reports it.
    pub(super) fn host_node(&mut self, host: &str, cpu_level: f64, mem_level: f64) -> usize {
        let id = format!("node:{host}");
        let cpus = [4, 8, 16][self.rng.below(3) as usize];
        let i = self.add(
            host,
            "host",
            &id,
            host,
            None,
            "online",
            json!({
                "os": "Debian GNU/Linux 12 (bookworm)",
                "kernel": "6.1.0-28-amd64",
                "cpu_count": cpus,
                "filesystems": 2,
            }),
        );
        let level = cpu_level + self.rng.range(0.0, 10.0);
        let amplitude = self.rng.range(3.0, 9.0);
        let mut cpu = self.shape(level, amplitude, 3.0);
        if host == PBS {
            // The verify job hashes every new chunk each night at 03:00 for about 25 minutes.
            // Baselines are hourly averages, which show only a share of such a job: the
            // control fleet is checked at 03:15, while it runs.
            cpu.bump = Some((180, 25, 45.0));
        }
        self.pct(i, metric::CPU_PCT, cpu);
        let level = mem_level + self.rng.range(20.0, 40.0);
        let mut mem = self.shape(level, 3.0, 1.0);
        if host == "dock2" && self.has(Trouble::MemoryPressure) {
            mem = Shape {
                level: 94.0,
                daily: 0.8,
                noise: 0.6,
                wobble: 0.4,
                ..mem
            };
        }
        let mem_pct = self.pct(i, metric::MEM_USED_PCT, mem);
        let total = 64.0 * GIB;
        self.gauge(i, metric::MEM_TOTAL_BYTES, total);
        self.gauge(i, metric::MEM_USED_BYTES, total * mem_pct / 100.0);
        self.gauge(i, metric::SWAP_TOTAL_BYTES, 4.0 * GIB);
        self.gauge(i, metric::SWAP_USED_BYTES, 0.1 * GIB);
        for m in [metric::LOAD1, metric::LOAD5, metric::LOAD15] {
            let load = f64::from(cpus) * self.rng.range(0.05, 0.4);
            self.gauge(i, m, load);
        }
        let v = self.rng.range(5.0, 200.0) * 86_400.0;
        self.gauge(i, metric::UPTIME_SECONDS, v);
        for (mount, total_gib) in [("/", 120.0), ("/boot/efi", 0.5)] {
            let mut pct = self.rng.range(6.0, 55.0);
            if host == PBS && mount == "/" && self.has(Trouble::HostFsFull) {
                // Years of task logs under /var/log/proxmox-backup.
                pct = 91.0;
            }
            let total = total_gib * GIB;
            let m = |name: &str| format!("{name}{{mount=\"{mount}\"}}");
            self.gauge(i, &m(metric::FS_TOTAL_BYTES), total);
            self.gauge(i, &m(metric::FS_USED_BYTES), total * pct / 100.0);
            self.gauge(i, &m(metric::FS_USED_PCT), pct);
        }
        self.gauge(
            i,
            &metric::labelled(metric::DISK_READ_BYTES_PER_S, "device", "nvme0n1"),
            2.0e6,
        );
        self.gauge(
            i,
            &metric::labelled(metric::DISK_WRITE_BYTES_PER_S, "device", "nvme0n1"),
            5.0e6,
        );
        self.gauge(
            i,
            &metric::labelled(metric::NET_RX_BYTES_PER_S, "iface", "eth0"),
            3.0e5,
        );
        self.gauge(
            i,
            &metric::labelled(metric::NET_TX_BYTES_PER_S, "iface", "eth0"),
            2.0e5,
        );
        let temp = self.rng.range(38.0, 55.0).round();
        self.gauge(
            i,
            &metric::labelled(metric::TEMP_CELSIUS, "sensor", "k10temp Tctl"),
            temp,
        );
        i
    }
}

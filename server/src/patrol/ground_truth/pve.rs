//! The Proxmox VE part of the ground-truth fleet: the cluster's nodes, guests, storage, ZFS,
//! Ceph, disks, certificates, backups and replication jobs.

use super::*;

impl Gen {
    pub(super) fn pve(&mut self) {
        for node in PVE_NODES.into_iter().chain([SPARE]) {
            self.agent(node, &["proxmox"]);
        }
        for node in PVE_NODES.into_iter().chain([SPARE]) {
            self.pve_node(node);
        }
        self.shared_storage();
        for vmid in FIRST_VMID..FIRST_VMID + GUESTS {
            self.guest(vmid);
        }
        self.ceph();
    }

    /// The cluster's Ceph, reported by the reporter: three OSDs on each node (their disks are
    /// not modelled). Its values draw nothing from the fleet's randomness, so the rest of the
    /// fleet is the same with or without it.
    fn ceph(&mut self) {
        let warn = self.has(Trouble::CephWarning);
        let (status, health, checks) = if warn {
            ("warning", "HEALTH_WARN", "OSD_DOWN,PG_DEGRADED")
        } else {
            ("healthy", "HEALTH_OK", "")
        };
        let i = self.add(
            "pve1",
            "proxmox",
            &format!("storage:{CLUSTER}/ceph"),
            "ceph",
            None,
            status,
            json!({"plugin": "ceph", "health": health, "health_checks": checks}),
        );
        let shape = Shape {
            level: 46.0,
            per_day: 0.0,
            daily: 0.0,
            peak_hour: 0.0,
            wobble: 0.1,
            noise: 0.2,
            step: None,
            bump: None,
            key: hash("ceph"),
        };
        let total = 5.0 * 3.0 * 3.84e12;
        let pct = self.pct(i, metric::STORAGE_USED_PCT, shape);
        self.gauge(i, metric::STORAGE_TOTAL_BYTES, total);
        self.gauge(i, metric::STORAGE_USED_BYTES, total * pct / 100.0);
        let up = if warn { 14.0 } else { 15.0 };
        for (m, v) in [
            (metric::CEPH_OSDS_TOTAL, 15.0),
            (metric::CEPH_OSDS_UP, up),
            (metric::CEPH_OSDS_IN, 15.0),
        ] {
            self.gauge(i, m, v);
        }
    }

    fn pve_node(&mut self, node: &str) {
        let id = format!("node:{node}");
        let cores = [32, 48, 64][self.rng.below(3) as usize];
        let attrs = json!({
            "cluster": CLUSTER,
            "quorate": true,
            "pve_version": "pve-manager/8.3.2/3e76eec21c4a14a7",
            "kernel": "Linux 6.8.12-5-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-5",
            "cpu_count": cores,
            "cpu_model": "AMD EPYC 7443P 24-Core Processor",
        });
        let i = if node == SPARE && self.has(Trouble::NodeOffline) {
            // Powered off: the reporter describes it offline; its own agent's last samples stay.
            let i = self.add(
                "pve1",
                "proxmox",
                &id,
                node,
                None,
                "offline",
                json!({"cluster": CLUSTER}),
            );
            self.end[i] = self.run_ms(node, "proxmox");
            self.step[i] = interval("proxmox");
            i
        } else {
            self.add(node, "proxmox", &id, node, None, "online", attrs)
        };
        let level = self.rng.range(12.0, 30.0);
        let amplitude = self.rng.range(4.0, 12.0);
        let mut cpu = self.shape(level, amplitude, 3.0);
        // The nightly backups (01:00-01:50) compress and send every guest's disks.
        cpu.bump = Some((60, 50, 15.0));
        if node == "pve4" && self.has(Trouble::NodeCpu) {
            // Saturated all day long (its backups are moved elsewhere).
            cpu = Shape {
                bump: None,
                level: 89.0,
                daily: 1.0,
                noise: 1.0,
                wobble: 0.5,
                ..cpu
            };
        }
        self.pct(i, metric::CPU_PCT, cpu);
        let level = self.rng.range(35.0, 62.0);
        let mem = self.shape(level, 3.0, 1.0);
        let mem_pct = self.pct(i, metric::MEM_USED_PCT, mem);
        let mem_total = [256.0, 384.0, 512.0][self.rng.below(3) as usize] * GIB;
        self.gauge(i, metric::MEM_TOTAL_BYTES, mem_total);
        self.gauge(i, metric::MEM_USED_BYTES, mem_total * mem_pct / 100.0);
        self.gauge(i, metric::SWAP_TOTAL_BYTES, 8.0 * GIB);
        let v = self.rng.range(0.0, 0.3) * GIB;
        self.gauge(i, metric::SWAP_USED_BYTES, v);
        let v = self.rng.range(8.0, 30.0);
        self.gauge(i, metric::ROOTFS_USED_PCT, v);
        for (m, f) in [
            (metric::LOAD1, 1.0),
            (metric::LOAD5, 0.9),
            (metric::LOAD15, 0.8),
        ] {
            let load = f64::from(cores) * self.rng.range(0.1, 0.3) * f;
            self.gauge(i, m, load);
        }
        let v = self.rng.range(10.0, 90.0) * 86_400.0;
        self.gauge(i, metric::UPTIME_SECONDS, v);
        // A healthy fleet is up to date: pending updates are a finding (info). The draw keeps
        // the rest of the fleet as it was.
        let _ = self.rng.below(25);
        let updates = if node == "pve2" && self.has(Trouble::UpdatesPending) {
            14.0
        } else {
            0.0
        };
        self.gauge(i, metric::UPDATES_PENDING, updates);
        // Failed tasks: the failed backups of its guests (their own findings), and migrations.
        let mut failed = match node {
            "pve1" if self.has(Trouble::BackupFailed) => 1.0,
            "pve3" if self.has(Trouble::BackupStorm) => 6.0,
            _ => 0.0,
        };
        if node == "pve4" && self.has(Trouble::TasksFailed) {
            failed += 3.0;
        }
        self.gauge(i, metric::TASKS_FAILED_24H, failed);
        // Certificates: read hourly, the time left sent every run from the last reading.
        let read = self.run_ms(node, "proxmox");
        let acme_left = if node == "pve2" && self.has(Trouble::CertExpiring) {
            10.0 * 86_400.0
        } else {
            self.rng.range(31.0, 89.0) * 86_400.0
        };
        for (file, left) in [
            ("pve-root-ca.pem", self.rng.range(2500.0, 3300.0) * 86_400.0),
            ("pve-ssl.pem", self.rng.range(200.0, 700.0) * 86_400.0),
            ("pveproxy-ssl.pem", acme_left),
        ] {
            self.gauge_at(
                i,
                &metric::labelled(metric::CERT_EXPIRES_IN_SECONDS, "file", file),
                left,
                read,
            );
        }

        // Node-local storage.
        for (storage, plugin, content, total) in [
            ("local", "dir", "iso,vztmpl,snippets", 94.0 * GIB),
            ("local-lvm", "lvmthin", "images,rootdir", 3.5 * TIB),
        ] {
            let sid = format!("storage:{node}/{storage}");
            let j = self.add(
                node,
                "proxmox",
                &sid,
                storage,
                Some(&id),
                "available",
                json!({"plugin": plugin, "content": content, "shared": false}),
            );
            let level = self.rng.range(15.0, 58.0);
            let mut s = self.shape(0.0, 0.0, 0.0).flat(level, 0.3);
            // Slow, steady growth: years to full.
            s.per_day = self.rng.range(0.0, 0.2);
            if storage == "local-lvm" {
                if node == "pve2" && self.has(Trouble::StorageWarning) {
                    s = s.flat(84.0, 0.3);
                }
                if node == "pve3" && self.has(Trouble::StorageFilling) {
                    s = Shape {
                        per_day: FILL_PER_DAY,
                        ..s.flat(FILL_NOW, 0.2)
                    };
                    s.wobble = 0.1;
                }
            }
            let pct = self.pct(j, metric::STORAGE_USED_PCT, s);
            self.gauge(j, metric::STORAGE_TOTAL_BYTES, total);
            self.gauge(j, metric::STORAGE_USED_BYTES, total * pct / 100.0);
        }

        // Disks: two SATA SSDs (rpool), one NVMe (local-lvm), two hard disks (tank).
        let disks = [
            (
                "/dev/sda",
                "ssd",
                "SAMSUNG MZ7L3480HCHQ-00A07",
                "S6KMNE0W",
                "ZFS",
            ),
            (
                "/dev/sdb",
                "ssd",
                "SAMSUNG MZ7L3480HCHQ-00A07",
                "S6KMNE0X",
                "ZFS",
            ),
            (
                "/dev/nvme0n1",
                "nvme",
                "Samsung SSD 980 PRO 2TB",
                "S69ENF0R",
                "LVM",
            ),
            ("/dev/sdc", "hdd", "ST8000VN004-3CP101", "WWZ4", "ZFS"),
            ("/dev/sdd", "hdd", "ST8000VN004-3CP101", "WWZ5", "ZFS"),
        ];
        let smart_read = read - self.rng.below(5 * 60_000) as i64;
        for (k, (dev, kind, model, prefix, used)) in disks.into_iter().enumerate() {
            let serial = format!("{prefix}{:06}", hash(&format!("{node}{dev}")) % 1_000_000);
            let did = format!("disk:{node}/{serial}");
            let failing = node == "pve2" && dev == "/dev/sdd" && self.has(Trouble::SmartFailing);
            let health = if failing { "FAILED" } else { "PASSED" };
            let j = self.add(
                node,
                "proxmox",
                &did,
                dev,
                Some(&id),
                if failing { "failing" } else { "healthy" },
                json!({
                    "devpath": dev,
                    "model": model,
                    "serial": serial,
                    "type": kind,
                    "health": health,
                    "used_by": used,
                }),
            );
            let size = match kind {
                "ssd" => 480.0 * 1e9,
                "nvme" => 2000.0 * 1e9,
                _ => 8000.0 * 1e9,
            };
            self.gauge(j, metric::DISK_SIZE_BYTES, size);
            if kind != "hdd" {
                let mut left = self.rng.range(70.0, 99.0).round();
                if node == "pve1" && k == 0 && self.has(Trouble::SsdWornOut) {
                    left = 12.0;
                }
                self.gauge(j, metric::DISK_WEAROUT_PCT, left);
            }
            let mut temp = match kind {
                "nvme" => self.rng.range(38.0, 56.0),
                "ssd" => self.rng.range(27.0, 38.0),
                _ => self.rng.range(31.0, 43.0),
            }
            .round();
            if node == "pve3" && dev == "/dev/sdc" && self.has(Trouble::HddHot) {
                temp = 58.0;
            }
            if node == "pve4" && kind == "nvme" && self.has(Trouble::NvmeHot) {
                temp = 82.0;
            }
            self.gauge_at(j, metric::DISK_TEMP_CELSIUS, temp, smart_read);
        }

        // ZFS pools.
        for (pool, size) in [("rpool", 446.0 * GIB), ("tank", 14.5 * TIB)] {
            let pid = format!("storage:{node}/zfs:{pool}");
            let mut attrs = json!({"plugin": "zfs", "pool": pool, "health": "ONLINE"});
            let degraded = node == "pve1" && pool == "tank" && self.has(Trouble::ZfsDegraded);
            if degraded {
                // What the collector adds for a pool that is not ONLINE (`zpool status`).
                let disk = format!("WWZ5{:06}", hash(&format!("{node}/dev/sdd")) % 1_000_000);
                attrs = json!({
                    "plugin": "zfs",
                    "pool": pool,
                    "health": "DEGRADED",
                    "zpool_status": "One or more devices are faulted in response to persistent \
                                     errors. Sufficient replicas exist for the pool to continue \
                                     functioning in a degraded state.",
                    "zpool_action": "Replace the faulted device, or use 'zpool clear' to mark \
                                     the device repaired.",
                    "zpool_scan": "scrub repaired 0B in 09:41:07 with 0 errors on Sun Jan 10 \
                                   10:05:08 2027",
                    "zpool_errors": "No known data errors",
                    "zpool_bad_devices": format!(
                        "ata-ST8000VN004-3CP101_{disk} (FAULTED, too many errors)"
                    ),
                });
            }
            let j = self.add(
                node,
                "proxmox",
                &pid,
                pool,
                Some(&id),
                if degraded { "degraded" } else { "online" },
                attrs,
            );
            let level = self.rng.range(8.0, 55.0);
            let mut s = self.shape(0.0, 0.0, 0.0).flat(level, 0.2);
            s.per_day = self.rng.range(0.0, 0.1);
            if node == "pve3" && pool == "tank" && self.has(Trouble::ZfsPoolFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, metric::STORAGE_USED_PCT, s);
            self.gauge(j, metric::STORAGE_TOTAL_BYTES, size);
            self.gauge(j, metric::STORAGE_USED_BYTES, size * pct / 100.0);
            self.gauge(j, metric::STORAGE_FREE_BYTES, size * (100.0 - pct) / 100.0);
            let v = self.rng.range(1.0, 25.0).round();
            self.gauge(j, metric::ZFS_FRAG_PCT, v);
            self.gauge(j, metric::ZFS_DEDUP_RATIO, 1.0);
            if pool == "tank" {
                // The PVE storage `tank` (type zfspool) holds the guests' disks on the pool: PVE
                // counts its datasets' used against used + available, a little above the pool.
                let k = self.add(
                    node,
                    "proxmox",
                    &format!("storage:{node}/tank"),
                    "tank",
                    Some(&id),
                    "available",
                    json!({"plugin": "zfspool", "content": "images,rootdir", "shared": false}),
                );
                let view = Shape {
                    level: s.level + 0.3,
                    ..s
                };
                let pct = self.pct(k, metric::STORAGE_USED_PCT, view);
                self.gauge(k, metric::STORAGE_TOTAL_BYTES, size * 0.97);
                self.gauge(k, metric::STORAGE_USED_BYTES, size * 0.97 * pct / 100.0);
            }
        }
    }

    /// Shared storage, reported by the reporter (pve1, the lowest online node).
    fn shared_storage(&mut self) {
        for (storage, plugin, content, total) in [
            ("pbs", "pbs", "backup", 16.0 * TIB),
            ("pbs-archive", "pbs", "backup", 24.0 * TIB),
            ("nfs-backup", "nfs", "backup,iso", 8.0 * TIB),
        ] {
            let sid = format!("storage:{CLUSTER}/{storage}");
            let j = self.add(
                "pve1",
                "proxmox",
                &sid,
                storage,
                None,
                "available",
                json!({"plugin": plugin, "content": content, "shared": true}),
            );
            let level = self.rng.range(25.0, 55.0);
            let mut s = self.shape(level, 0.5, 0.2);
            s.wobble = 0.3;
            if storage == "pbs-archive" && self.has(Trouble::BackupTargetFull) {
                s = s.flat(93.0, 0.2);
            }
            let pct = self.pct(j, metric::STORAGE_USED_PCT, s);
            self.gauge(j, metric::STORAGE_TOTAL_BYTES, total);
            self.gauge(j, metric::STORAGE_USED_BYTES, total * pct / 100.0);
        }
    }

    fn guest(&mut self, vmid: u32) {
        if vmid == NEW_GUEST {
            self.born_ms = self.now - 3 * HOUR - 7 * MIN;
        }
        self.guest_of(vmid);
        self.born_ms = i64::MIN;
    }

    fn guest_of(&mut self, vmid: u32) {
        let node = guest_node(vmid);
        let kind = guest_kind(vmid);
        let lxc = kind == "lxc";
        let id = guest_id(vmid);
        let template = TEMPLATES.contains(&vmid);
        let running = !template && !STOPPED.contains(&vmid);
        let cpus = [1, 2, 4, 8][self.rng.below(4) as usize];
        let mut attrs = json!({
            "vmid": vmid,
            "node": node,
            "template": template,
            "cpus": cpus,
            "lock": null,
        });
        if running && vmid.is_multiple_of(7) {
            attrs["ha_state"] = json!("started");
        }
        // Guests are the reporter's.
        let i = self.add(
            "pve1",
            "proxmox",
            &id,
            &guest_name(vmid),
            Some(&format!("node:{node}")),
            if running { "running" } else { "stopped" },
            attrs,
        );
        let mem_total = [1.0, 2.0, 4.0, 8.0, 16.0][self.rng.below(5) as usize] * GIB;
        let disk_total = if lxc { 8.0 * GIB } else { 64.0 * GIB };
        self.gauge(i, metric::MEM_TOTAL_BYTES, mem_total);
        self.gauge(i, metric::DISK_TOTAL_BYTES, disk_total);
        // Balloon statistics, guest filesystems and failed backups come from the agent of the
        // guest's node.
        let node_read = self.run_ms(node, "proxmox");
        if running {
            let level = self.rng.range(2.0, 25.0);
            let amplitude = self.rng.range(1.0, 8.0);
            let mut cpu = self.shape(level, amplitude, 2.0);
            if matches!(vmid % 12, 6 | 10) {
                // CI runners and build machines: busy in working hours, idle at night.
                cpu.level = 40.0;
                cpu.daily = 30.0;
                cpu.peak_hour = 14.0;
                cpu.noise = 4.0;
            }
            if vmid == 104 {
                cpu = Shape {
                    level: 8.0,
                    daily: 2.0,
                    noise: 1.5,
                    wobble: 1.0,
                    ..cpu
                };
                if self.has(Trouble::CpuAnomaly) {
                    cpu.step = Some((self.now - 40 * MIN, 72.0));
                }
            }
            self.pct(i, metric::CPU_PCT, cpu);
            let level = self.rng.range(25.0, 70.0);
            let mut mem = self.shape(level, 2.0, 1.0);
            if vmid == 100 && self.has(Trouble::GuestMemory) {
                mem = Shape {
                    level: 83.0,
                    daily: 0.5,
                    noise: 0.5,
                    wobble: 0.3,
                    ..mem
                };
            }
            let mem_pct = self.pct(i, metric::MEM_USED_PCT, mem);
            self.gauge(i, metric::MEM_USED_BYTES, mem_total * mem_pct / 100.0);
            let v = self.rng.range(1.0, 60.0) * 86_400.0;
            self.gauge(
                i,
                metric::UPTIME_SECONDS,
                v.min(self.now.saturating_sub(self.born_ms) as f64 / 1000.0),
            );
            if lxc {
                let mut pct = self.rng.range(12.0, 68.0);
                if vmid == 101 && self.has(Trouble::ContainerDiskFull) {
                    pct = 93.5;
                }
                self.gauge(i, metric::DISK_USED_PCT, pct);
                self.gauge(i, metric::DISK_USED_BYTES, disk_total * pct / 100.0);
            } else {
                self.gauge_at(
                    i,
                    metric::GUEST_MEM_TOTAL_BYTES,
                    mem_total - 0.2 * GIB,
                    node_read,
                );
                self.gauge_at(
                    i,
                    metric::GUEST_MEM_USED_BYTES,
                    mem_total * mem_pct / 110.0,
                    node_read,
                );
                // Filesystems through the guest agent (most VMs have it), every 5 minutes.
                if !vmid.is_multiple_of(3) || vmid == 102 {
                    let fs_read = node_read - self.rng.below(5 * 60_000) as i64;
                    let root = self.rng.range(15.0, 65.0);
                    let mut mounts = vec![("/", root, 40.0), ("/boot/efi", 5.8, 0.5)];
                    if vmid % 4 == 2 {
                        let mut var = self.rng.range(10.0, 62.0);
                        if vmid == 102 && self.has(Trouble::VmFilesystemFull) {
                            var = 87.0;
                        }
                        mounts.push(("/var", var, 20.0));
                    }
                    for (mount, pct, total_gib) in mounts {
                        let total = total_gib * GIB;
                        let used = total * pct / 100.0;
                        let m = |name: &str| format!("{name}{{mountpoint=\"{mount}\"}}");
                        self.gauge_at(i, &m(metric::GUEST_FS_USED_BYTES), used, fs_read);
                        self.gauge_at(i, &m(metric::GUEST_FS_TOTAL_BYTES), total, fs_read);
                        self.gauge_at(
                            i,
                            &m(metric::GUEST_FS_USED_PCT),
                            used / total * 100.0,
                            fs_read,
                        );
                    }
                }
            }
        }
        if vmid == NEW_GUEST {
            self.gauge_at(i, metric::BACKUP_FAILED_24H, 0.0, node_read);
        } else if !template {
            self.backups(i, vmid, node_read);
        }
        if running && vmid.is_multiple_of(10) {
            self.replication(i, vmid, node);
        }
    }

    /// The backup metrics of a guest: age and count of its newest backup on its storage (read
    /// by the reporter), failed backups in 24 h (read by the agent of its node).
    fn backups(&mut self, i: usize, vmid: u32, node_read: i64) {
        let storage = backup_storage(vmid);
        let mut read = self.snap.resources[i].updated_at_ms;
        if vmid == 103 && self.has(Trouble::BackupFrozen) {
            // Its backup group was pruned three hours ago: the collector no longer sends its
            // age, whose last sample stays.
            read -= 3 * HOUR;
        }
        let minute = match storage {
            "pbs" => backup_minute(vmid),
            // The archive job runs at 03:30, the NFS one at 04:00.
            "pbs-archive" => 210,
            _ => 240,
        };
        // A backup takes a few minutes; its age counts from its start.
        let mut newest = last_daily(read - 15 * MIN, minute);
        let mut failed = 0.0;
        let storm = self.has(Trouble::BackupStorm) && STORM_GUESTS.contains(&vmid);
        if storm || (vmid == 108 && self.has(Trouble::BackupFailed)) {
            // The latest run (which failed fast) is last night's: the newest backup is the
            // night before, under 48 hours ago.
            newest = last_daily(read, minute) - DAY;
            failed = 1.0;
        }
        if ARCHIVE_GUESTS.contains(&vmid) && self.has(Trouble::BackupTargetFull) {
            // Failing every night since the target filled up.
            newest = read - 3 * DAY - 12 * HOUR;
            failed = 1.0;
        }
        let mut age = (read - newest) as f64 / 1000.0;
        if vmid == 105 && self.has(Trouble::BackupOld) {
            // Its backup job was deleted: nothing fails, nothing runs.
            age = 3.2 * 86_400.0;
        }
        self.gauge_at(
            i,
            &metric::labelled(metric::BACKUP_LAST_AGE_SECONDS, "storage", storage),
            age,
            read,
        );
        let count = 7.0 + f64::from(vmid % 5);
        self.gauge_at(
            i,
            &metric::labelled(metric::BACKUP_COUNT, "storage", storage),
            count,
            read,
        );
        self.gauge_at(i, metric::BACKUP_FAILED_24H, failed, node_read);
    }

    /// Replication job `<vmid>-0` of a running guest to the next node, every 15 minutes.
    fn replication(&mut self, i: usize, vmid: u32, node: &str) {
        let k = PVE_NODES.iter().position(|n| *n == node).unwrap_or(0);
        let target = PVE_NODES[(k + 1) % PVE_NODES.len()];
        let job = format!("{vmid}-0");
        let read = self.run_ms(node, "proxmox");
        let mut last_sync = read.div_euclid(15 * MIN) * 15 * MIN + 4 * SEC;
        if last_sync > read {
            last_sync -= 15 * MIN;
        }
        let failing = vmid == 120 && self.has(Trouble::ReplicationFailing);
        let fail_count: i64 = if failing {
            last_sync -= 90 * MIN;
            4
        } else {
            0
        };
        let duration = self.rng.range(1.5, 9.0);
        let label = |m: &str| format!("{m}{{job=\"{job}\"}}");
        self.gauge_at(
            i,
            &label(metric::REPLICATION_FAIL_COUNT),
            fail_count as f64,
            read,
        );
        self.gauge_at(
            i,
            &label(metric::REPLICATION_LAST_SYNC_AGE_SECONDS),
            ((read - last_sync) / 1000) as f64,
            read,
        );
        self.gauge_at(
            i,
            &label(metric::REPLICATION_LAST_DURATION_SECONDS),
            duration,
            read,
        );
        let mut attrs = json!({
            "guest": vmid,
            "source": node,
            "target": target,
            "schedule": "*/15",
            "fail_count": fail_count,
            "last_sync": last_sync / 1000,
            "next_sync": (last_sync + 15 * MIN) / 1000,
        });
        if failing {
            attrs["error"] = json!(format!(
                "command '/usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias={target}' \
                 root@10.10.0.{} -- pvesr prepare-local-job {job} local-lvm:vm-{vmid}-disk-0 \
                 --last_sync {}' failed: exit code 255",
                (k + 1) % PVE_NODES.len() + 11,
                last_sync / 1000
            ));
        }
        self.add(
            node,
            "proxmox",
            canonical::replication(CLUSTER, &job).unwrap().as_str(),
            &job,
            Some(&guest_id(vmid)),
            if failing { "failing" } else { "ok" },
            attrs,
        );
    }
}

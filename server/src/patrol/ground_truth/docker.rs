//! The Docker part of the ground-truth fleet: four hosts, their engines and containers.

use super::*;

impl Gen {
    pub(super) fn docker_host(&mut self, host: &str) {
        self.agent(host, &["host", "docker"]);
        self.host_node(host, 10.0, 25.0);
        let node = format!("node:{host}");
        let containers = [
            ("traefik", "traefik:v3.2"),
            ("web", "registry.example.com/shop/web:5.12.0"),
            ("api", "registry.example.com/shop/api:2.4.0"),
            ("worker", "registry.example.com/shop/worker:2.4.0"),
            ("cache", "redis:7.4-alpine"),
            ("postgres", "postgres:16.6"),
            ("grafana", "grafana/grafana:11.4.0"),
            ("prometheus", "prom/prometheus:v3.0.1"),
            ("node-exporter", "prom/node-exporter:v1.8.2"),
            ("watchtower", "containrrr/watchtower:1.7.1"),
            // A one-shot migration that exited successfully three days ago.
            ("db-migrate", "registry.example.com/shop/migrate:2.4.0"),
        ];
        let now = self.now;
        let (mut running, mut stopped) = (0, 0);
        for (name, image) in containers {
            let id = format!("docker:{host}/{name}");
            let restarts = self.rng.below(3) as f64;
            let restarting = match (host, name) {
                ("dock1", "api") if self.has(Trouble::ContainerRestarts) => 5,
                ("dock2", "cache") if self.has(Trouble::MemoryPressure) => 4,
                ("dock2", "worker") if self.has(Trouble::MemoryPressure) => 1,
                _ => 0,
            };
            let oom = host == "dock2" && name == "worker" && self.has(Trouble::MemoryPressure);
            let healthcheck = matches!(name, "web" | "api" | "postgres" | "traefik");
            let health =
                if host == "dock1" && name == "web" && self.has(Trouble::ContainerUnhealthy) {
                    json!("unhealthy")
                } else if healthcheck {
                    json!("healthy")
                } else {
                    Value::Null
                };
            let limit = [0.5, 1.0, 2.0, 4.0][self.rng.below(4) as usize] * GIB;
            let started = now - self.rng.range(2.0, 30.0) as i64 * DAY;
            // The restarts of the last hour, evenly spread and the last a few minutes ago.
            let times: Vec<i64> = (0..restarting)
                .map(|n| now - 3 * MIN - i64::from(n) * 11 * MIN)
                .collect();
            let total = restarts + f64::from(restarting);
            let exited = name == "db-migrate";
            let finished = exited
                .then(|| crate::clock::rfc3339_ms(now - 3 * DAY))
                .flatten();
            let i = self.add(
                host,
                "docker",
                &id,
                name,
                Some(&node),
                if exited { "exited" } else { "running" },
                json!({
                    "container_id": format!("{:012x}", hash(&id) & 0xFFFF_FFFF_FFFF),
                    "image": image,
                    "image_id": format!("sha256:{:016x}", hash(image)),
                    "health": health,
                    metric::RESTART_COUNT: total,
                    "exit_code": if restarting > 0 { json!(137) } else { json!(0) },
                    "oom_killed": oom,
                    "started_at": crate::clock::rfc3339_ms(times.first().copied().unwrap_or(started)),
                    "finished_at": finished,
                    metric::MEM_LIMIT_BYTES: limit,
                }),
            );
            self.counter(i, metric::RESTART_COUNT, |t| {
                restarts + times.iter().filter(|&&r| r <= t).count() as f64
            });
            if exited {
                stopped += 1;
                continue;
            }
            running += 1;
            let level = self.rng.range(0.5, 18.0);
            let amplitude = self.rng.range(0.5, 6.0);
            let cpu = self.shape(level, amplitude, 1.5);
            self.pct(i, metric::CPU_PCT, cpu);
            let level = self.rng.range(15.0, 65.0);
            let mem = self.shape(level, 1.5, 1.0);
            let pct = self.pct(i, metric::MEM_USED_PCT, mem);
            self.gauge(i, metric::MEM_LIMIT_BYTES, limit);
            self.gauge(i, metric::MEM_USED_BYTES, limit * pct / 100.0);
        }
        let engine = self.add(
            host,
            "docker",
            &format!("docker-host:{host}"),
            host,
            Some(&node),
            "online",
            json!({
                "socket": "/var/run/docker.sock",
                "server_version": "27.4.1",
                "api_version": "1.47",
                metric::CONTAINERS_TOTAL: running + stopped,
                metric::CONTAINERS_RUNNING: running,
                metric::CONTAINERS_PAUSED: 0,
                metric::CONTAINERS_STOPPED: stopped,
            }),
        );
        for (m, v) in [
            (metric::CONTAINERS_TOTAL, running + stopped),
            (metric::CONTAINERS_RUNNING, running),
            (metric::CONTAINERS_PAUSED, 0),
            (metric::CONTAINERS_STOPPED, stopped),
        ] {
            self.gauge(engine, m, f64::from(v));
        }
    }
}

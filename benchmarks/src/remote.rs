//! The `remote/*` workloads: `multiprocess::remote::Pool` on the
//! `redis-server` the runner started (its URL in [`URL_ENV`]), with workers
//! that are this binary re-executed (`spawn_local_workers`). The Python side
//! of `remote/rq_*` is `python/rq_bench.py` (RQ 3.0, `SimpleWorker`).
//!
//! `remote/queue_put_get` and `remote/lock_acquire_release` measure the
//! remote Queue and Lock in one process.

#[cfg(feature = "redis")]
pub(crate) use rows::run;

/// Without the feature: every remote row is skipped by the runner.
#[cfg(not(feature = "redis"))]
pub(crate) fn run(_: &crate::workloads::Out, name: &str, _: bool) -> crate::floors::Result<()> {
    Err(format!("{name}: built without the redis feature").into())
}

/// The runner puts the server's URL here for every `remote/*` worker.
pub(crate) const URL_ENV: &str = "MPBENCH_REDIS_URL";

/// The unit of a `remote/*` row, for a row that is skipped.
pub(crate) fn unit(name: &str) -> &'static str {
    match name {
        "remote/sleep1ms_2w" | "remote/sleep1ms_4w" => "% of ideal",
        _ if name.starts_with("remote/apply_") => "µs",
        "remote/lock_acquire_release" | "remote/queue_put_get" => "pairs/s",
        _ => "tasks/s",
    }
}

#[cfg(feature = "redis")]
mod rows {
    use std::time::{Duration, Instant};

    use multiprocess::remote::{Cluster, Pool};

    use super::URL_ENV;
    use crate::floors::Result;
    use crate::workloads::Out;

    fn square(x: u64) -> u64 {
        x.wrapping_mul(x)
    }

    fn sleep_1ms(x: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(1));
        x
    }

    multiprocess::remote_task!(square, sleep_1ms);

    fn pick<T>(quick: bool, q: T, full: T) -> T {
        if quick { q } else { full }
    }

    /// A remote pool with `n` local workers, warmed up. Each pool has a name
    /// of its own, so that no worker of an earlier pool counts as one of it.
    fn pool(tag: &str, n: usize) -> Result<Pool> {
        let cluster = cluster()?;
        let pool = cluster.pool(&format!("{tag}-{n}w"))?;
        pool.spawn_local_workers(n)?;
        check(&pool.with_chunksize(1).map(square, 0..500u64)?, 500)?;
        Ok(pool)
    }

    /// This worker's cluster: a namespace of its own on the runner's server.
    fn cluster() -> Result<Cluster> {
        let url = std::env::var(URL_ENV).map_err(|_| format!("{URL_ENV} is not set"))?;
        Ok(Cluster::builder(&url)
            .namespace(&format!("mpbench-{}", std::process::id()))
            .connect()?)
    }

    fn check(r: &[u64], n: u64) -> Result<()> {
        if r.len() as u64 != n || (n > 0 && r[n as usize - 1] != (n - 1) * (n - 1)) {
            return Err("wrong map result".into());
        }
        Ok(())
    }

    /// Tasks per second of `map(square, 0..n)` at chunksize 1, `reps` times.
    fn map_rate(pool: &Pool, n: u64, reps: usize) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            let r = pool.with_chunksize(1).map(square, 0..n)?;
            samples.push(n as f64 / t.elapsed().as_secs_f64());
            check(&r, n)?;
        }
        Ok(samples)
    }

    /// Tasks per second of `map(sleep_1ms, 0..n)` at chunksize 1.
    fn sleep_rate(pool: &Pool, n: u64) -> Result<f64> {
        let t = Instant::now();
        let r = pool.with_chunksize(1).map(sleep_1ms, 0..n)?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        if r.len() as u64 != n || r.last() != Some(&(n - 1)) {
            return Err("wrong map result".into());
        }
        Ok(rate)
    }

    /// Runs the `remote/*` workload `name`.
    pub(crate) fn run(out: &Out, name: &str, quick: bool) -> Result<()> {
        match name {
            "remote/local_pool_2w" => crate::workloads::pool_map_chunksize1(out, quick),
            "remote/map_c1_1w" => map_c1(out, 1, quick),
            "remote/map_c1_2w" => map_c1(out, 2, quick),
            "remote/map_c1_4w" => map_c1(out, 4, quick),
            "remote/sleep1ms_1w" => sleep1ms_base(out, quick),
            "remote/sleep1ms_2w" => scaling(out, 2, quick),
            "remote/sleep1ms_4w" => scaling(out, 4, quick),
            "remote/apply_p50_2w" => apply_latency(out, 50.0, quick),
            "remote/apply_p99_2w" => apply_latency(out, 99.0, quick),
            "remote/rq_1w" => vs_rq(out, 1, quick),
            "remote/rq_2w" => vs_rq(out, 2, quick),
            "remote/lock_acquire_release" => lock_pairs(out, quick),
            "remote/queue_put_get" => queue_pairs(out, quick),
            _ => Err(format!("unknown workload {name}").into()),
        }
    }

    fn map_c1(out: &Out, workers: usize, quick: bool) -> Result<()> {
        let pool = pool("map", workers)?;
        let samples = map_rate(&pool, pick(quick, 5_000, 100_000), pick(quick, 2, 3))?;
        out.rust("tasks/s", samples);
        Ok(())
    }

    fn sleep1ms_base(out: &Out, quick: bool) -> Result<()> {
        let (n, reps) = (pick(quick, 200, 2000), pick(quick, 2, 3));
        let pool = pool("sleep", 1)?;
        let samples = (0..reps)
            .map(|_| sleep_rate(&pool, n))
            .collect::<Result<Vec<_>>>()?;
        out.rust("tasks/s", samples);
        Ok(())
    }

    /// Speed-up of `workers` over 1 worker on 1 ms sleeps, over the ideal
    /// (`workers`), in %: one pair of runs per sample.
    fn scaling(out: &Out, workers: usize, quick: bool) -> Result<()> {
        let (n, reps) = (pick(quick, 200, 2000), pick(quick, 2, 3));
        let one = pool("sleep", 1)?;
        let many = pool("sleep", workers)?;
        let mut samples = Vec::with_capacity(reps);
        let mut rates = Vec::new();
        for _ in 0..reps {
            let base = sleep_rate(&one, n)?;
            let rate = sleep_rate(&many, n)?;
            rates.push(rate);
            samples.push(rate / base / workers as f64 * 100.0);
        }
        eprintln!("{workers} workers, 1 ms sleeps: tasks/s {rates:.0?}");
        out.rust("% of ideal", samples);
        Ok(())
    }

    /// `apply(square, (i,))` one at a time on 2 workers: the `pct` percentile
    /// of each batch's latencies, in µs.
    fn apply_latency(out: &Out, pct: f64, quick: bool) -> Result<()> {
        let (batch, reps) = (pick(quick, 300, 2000), pick(quick, 3, 5));
        let pool = pool("apply", 2)?;
        let round = |n: u64| -> Result<Vec<f64>> {
            let mut lat = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                let r = pool.apply(square, (i,))?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                if r != i * i {
                    return Err("wrong apply result".into());
                }
            }
            Ok(lat)
        };
        round(200)?;
        let mut samples = Vec::with_capacity(reps);
        for _ in 0..reps {
            let mut lat = round(batch as u64)?;
            lat.sort_by(f64::total_cmp);
            let k = ((pct / 100.0 * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            samples.push(lat[k]);
        }
        out.rust("µs", samples);
        Ok(())
    }

    /// The Rust side of the RQ rows: the same number of tasks as RQ's side,
    /// chunksize 1, `workers` workers.
    fn vs_rq(out: &Out, workers: usize, quick: bool) -> Result<()> {
        let pool = pool("rq", workers)?;
        let samples = map_rate(&pool, pick(quick, 200, 2000), pick(quick, 3, 5))?;
        out.rust("tasks/s", samples);
        Ok(())
    }

    /// Uncontended `acquire()` + `release()` of a `remote::Lock`, one
    /// process: pairs per second.
    fn lock_pairs(out: &Out, quick: bool) -> Result<()> {
        let (n, reps) = (pick(quick, 300, 3000), pick(quick, 3, 5));
        let lock = cluster()?.lock("bench")?;
        let round = |n: usize| -> Result<f64> {
            let t = Instant::now();
            for _ in 0..n {
                lock.acquire()?.release()?;
            }
            Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        round(100)?;
        let samples = (0..reps).map(|_| round(n)).collect::<Result<Vec<_>>>()?;
        out.rust("pairs/s", samples);
        Ok(())
    }

    /// `put(u64)` + `get()` of a `remote::Queue`, one process: pairs per
    /// second (each a script call; get also confirms, so three round trips
    /// per pair).
    fn queue_pairs(out: &Out, quick: bool) -> Result<()> {
        let (n, reps) = (pick(quick, 300, 3000), pick(quick, 3, 5));
        let q = cluster()?.queue::<u64>("bench")?;
        let round = |n: usize| -> Result<f64> {
            let t = Instant::now();
            for i in 0..n as u64 {
                q.put(i).map_err(|e| e.to_string())?;
                if q.get()? != i {
                    return Err("queue order".into());
                }
            }
            Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        round(100)?;
        let samples = (0..reps).map(|_| round(n)).collect::<Result<Vec<_>>>()?;
        out.rust("pairs/s", samples);
        Ok(())
    }
}

//! Tutorial, "The 4 Essential Parts", Example 04: four scrapers report to an
//! aggregator through a Queue and a Pipe, printing under a Lock.
//!
//! Prints (scrape order and times are random, as in Python):
//! ```text
//! Scraping google.com
//! Scraping facebook.com
//! Scraping x.com
//! Scraping github.com
//! Scraped facebook.com
//! Scraped x.com
//! Scraped google.com
//! Scraped github.com
//! ---Aggregated result---
//! facebook.com: Scraped data in 2 seconds
//! x.com: Scraped data in 5 seconds
//! google.com: Scraped data in 9 seconds
//! github.com: Scraped data in 10 seconds
//! facebook.com: Scraped data in 2 seconds seconds
//! x.com: Scraped data in 5 seconds seconds
//! google.com: Scraped data in 9 seconds seconds
//! github.com: Scraped data in 10 seconds seconds
//! Done
//! ```
//! (The doubled "seconds seconds" is the original's output, kept as is.)
//!
//! Differences from the Python original, which this version fixes:
//! - The original hands one pipe end to all four scrapers. Several writers on
//!   one pipe end can interleave the bytes of large messages, and every
//!   scraper closing "its" end closes the shared one. Here each scraper gets
//!   its own pipe: a `Connection` cannot be cloned, so the flaw cannot be
//!   written.
//! - It imports `PipeConnection`, which exists only on Windows.
//! - The aggregator reads each pipe in the order the queue reports, so its
//!   two lists agree.

#[path = "support/scale.rs"]
mod scale;

use multiprocess::{Connection, Lock, Pipe, Process, Queue};

type Report = (String, String);

fn scrape_website(
    url: String,
    queue: Queue<Report>,
    child_conn: Connection<Report, ()>,
    lock: Lock,
) {
    println!("Scraping {url}");
    let scrape_time = fastrand::u32(1..=10);
    scale::sleep(f64::from(scrape_time));
    let data = format!("Scraped data in {scrape_time} seconds");
    // only one process prints at a time
    {
        let _guard = lock.acquire();
        println!("Scraped {url}");
    }
    // send the data to the main process
    queue.put((url.clone(), data.clone())).expect("queue put");
    // send metadata via the pipe
    child_conn.send((url, data)).expect("pipe send");
}

fn aggregate_data(
    queue: Queue<Report>,
    parent_conns: Vec<(String, Connection<(), Report>)>,
    lock: Lock,
    websites: Vec<String>,
) {
    let mut results = Vec::new();
    let mut times = Vec::new();
    for _ in &websites {
        let (web, data) = queue.get().expect("queue get");
        // the pipe of the scraper that just reported
        let conn = &parent_conns
            .iter()
            .find(|(url, _)| *url == web)
            .expect("known url")
            .1;
        let (web_url, scrape_time) = conn.recv().expect("pipe recv");
        results.push((web, data));
        times.push((web_url, scrape_time));
    }
    let _guard = lock.acquire();
    println!("---Aggregated result---");
    for (url, data) in &results {
        println!("{url}: {data}");
    }
    for (url, scrape_time) in &times {
        println!("{url}: {scrape_time} seconds");
    }
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let websites: Vec<String> = ["google.com", "facebook.com", "x.com", "github.com"]
        .map(String::from)
        .to_vec();
    let queue: Queue<Report> = Queue::new()?;
    let lock = Lock::new()?;

    let mut processes = Vec::new();
    let mut parent_conns = Vec::new();
    for url in &websites {
        let (parent_conn, child_conn) = Pipe::new::<(), Report>()?;
        parent_conns.push((url.clone(), parent_conn));
        let p = Process::new(
            scrape_website,
            (url.clone(), queue.clone(), child_conn, lock.clone()),
        );
        p.start()?;
        processes.push(p);
    }
    // wait for all processes to finish
    for p in &processes {
        p.join()?;
    }

    let aggregate_process = Process::new(aggregate_data, (queue, parent_conns, lock, websites));
    aggregate_process.start()?;
    aggregate_process.join()?;
    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}

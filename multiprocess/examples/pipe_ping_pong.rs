//! Tutorial, "Advance section", Pipe: the example the tutorial announces and
//! leaves empty. Two processes talk both ways over one duplex pipe: a pinger
//! sends numbered pings, a ponger answers each with a pong, and a final
//! `None` says goodbye.
//!
//! Prints (always in this order: each side waits for the other):
//! ```text
//! Pinger sends: ping 1
//! Ponger received: ping 1
//! Ponger sends: pong 1
//! Pinger received: pong 1
//! Pinger sends: ping 2
//! Ponger received: ping 2
//! Ponger sends: pong 2
//! Pinger received: pong 2
//! Pinger sends: ping 3
//! Ponger received: ping 3
//! Ponger sends: pong 3
//! Pinger received: pong 3
//! Ponger says goodbye
//! Done
//! ```
//!
//! The pipe ends are typed: the pinger's end sends `Option<String>` and
//! receives `String`, the ponger's the reverse, so a message of the wrong
//! type cannot be sent, and receiving one would be an error, not garbage.

#[path = "support/scale.rs"]
mod scale;

use multiprocess::{Connection, Pipe, Process};

fn pinger(conn: Connection<Option<String>, String>, rounds: u32) {
    for i in 1..=rounds {
        let ping = format!("ping {i}");
        println!("Pinger sends: {ping}");
        conn.send(Some(ping)).expect("send ping");
        let pong = conn.recv().expect("recv pong");
        println!("Pinger received: {pong}");
        scale::sleep(0.5);
    }
    conn.send(None).expect("send goodbye");
}

fn ponger(conn: Connection<String, Option<String>>) {
    while let Some(ping) = conn.recv().expect("recv ping") {
        println!("Ponger received: {ping}");
        let pong = ping.replace("ping", "pong");
        println!("Ponger sends: {pong}");
        conn.send(pong).expect("send pong");
    }
    println!("Ponger says goodbye");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = Pipe::new::<Option<String>, String>()?;
    let ping = Process::new(pinger, (a, 3u32));
    let pong = Process::new(ponger, (b,));
    ping.start()?;
    pong.start()?;
    ping.join()?;
    pong.join()?;
    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}

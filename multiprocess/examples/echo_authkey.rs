//! Python's `multiprocessing.connection` `Listener`/`Client` with an
//! authkey: a server process listens on a loopback TCP port, a client
//! process connects with the shared key and has two lines echoed, and a
//! second client with the wrong key is refused on both ends (Python's
//! `AuthenticationError`).
//!
//! Prints (always in this order: each side waits for the other):
//! ```text
//! Server listening on loopback TCP with an authkey
//! Client sends: hello
//! Server received: hello
//! Client received: echo: hello
//! Client sends: world
//! Server received: world
//! Client received: echo: world
//! Client with the wrong key: digest sent was rejected
//! Server refused it: digest received was wrong
//! Done
//! ```

use multiprocess::{Address, Client, ConnectError, Listener, Process};

const AUTHKEY: &[u8] = b"secret password";

fn client(address: Address, authkey: Vec<u8>) {
    let conn = Client::connect::<String, String>(address, Some(&authkey)).expect("connect");
    for word in ["hello", "world"] {
        println!("Client sends: {word}");
        conn.send(word.to_string()).expect("send");
        let echo = conn.recv().expect("recv");
        println!("Client received: {echo}");
    }
}

fn intruder(address: Address, authkey: Vec<u8>) {
    match Client::connect::<String, String>(address, Some(&authkey)) {
        Err(ConnectError::Authentication(e)) => println!("Client with the wrong key: {e}"),
        other => panic!("the wrong key was not refused: {other:?}"),
    }
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::<String, String>::bind("127.0.0.1:0", Some(AUTHKEY))?;
    println!("Server listening on loopback TCP with an authkey");
    let address = listener.address().clone();

    let good = Process::new(client, (address.clone(), AUTHKEY.to_vec()));
    good.start()?;
    let conn = listener.accept()?;
    while let Ok(word) = conn.recv() {
        println!("Server received: {word}");
        conn.send(format!("echo: {word}"))?;
    }
    good.join()?;

    let bad = Process::new(intruder, (address, b"wrong password".to_vec()));
    bad.start()?;
    let err = listener.accept().expect_err("the wrong key was accepted");
    bad.join()?;
    println!("Server refused it: {err}");
    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}

//! Tutorial, "Multiprocessing in Python", Example 01: two processes computing
//! a cube and a square while the main process waits for both.
//!
//! Prints (the first two lines in either order, as in Python):
//! ```text
//! Simulate some work for cube
//! Simulate some work for square
//! Cube: 2197
//! Square: 100
//! Done
//! ```

#[path = "support/scale.rs"]
mod scale;

use multiprocess::Process;

fn print_cube(num: i64) {
    println!("Simulate some work for cube");
    scale::sleep(10.0);
    println!("Cube: {}", num * num * num);
}

fn print_square(num: i64) {
    println!("Simulate some work for square");
    scale::sleep(15.0);
    println!("Square: {}", num * num);
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    // creating processes
    let p1 = Process::new(print_square, (10,));
    let p2 = Process::new(print_cube, (13,));

    // starting process 1, then process 2
    p1.start()?;
    p2.start()?;

    // wait until process 1 is finished, then process 2
    p1.join()?;
    p2.join()?;

    // both processes finished
    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}

//! Tutorial, "Advance section", Queue Example 01 (without a Lock): one process
//! fills a queue, then another drains it. No Lock is needed: the queue is
//! process-safe.
//!
//! Prints:
//! ```text
//! 1
//! 16
//! 25
//! 36
//! 49
//! 16
//! Queue is now empty
//! All Done
//! ```

use multiprocess::{Process, Queue};

fn square_list(mylist: Vec<i64>, queue: Queue<i64>) {
    for item in mylist {
        queue.put(item * item).expect("queue put");
    }
}

fn print_queue(queue: Queue<i64>) {
    while !queue.is_empty() {
        println!("{}", queue.get().expect("queue get"));
    }
    println!("Queue is now empty");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let queue: Queue<i64> = Queue::new()?;
    let my_list = vec![1, 4, 5, 6, 7, 4];
    let p1 = Process::new(square_list, (my_list, queue.clone()));
    let p2 = Process::new(print_queue, (queue,));

    // run p1 to square the list, then p2 to print the queue
    p1.start()?;
    p1.join()?;
    p2.start()?;
    p2.join()?;

    println!("All Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}

//! Waiting on several futures: [`as_completed`] (yields them as they
//! finish) and [`wait_futures`] (Python's `concurrent.futures.wait`). Both
//! register a waker per future that reports its index, so a wait never polls.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::error::ExecutorError;
use super::future::TaskFuture;
use super::lock::{lock, wait_until};

/// Wakes [`AsCompleted`] with the index of a finished future.
struct Ready {
    queue: Mutex<VecDeque<usize>>,
    cv: Condvar,
}

struct IndexWaker {
    index: usize,
    ready: Arc<Ready>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        lock(&self.ready.queue).push_back(self.index);
        self.ready.cv.notify_all();
    }
}

/// Yields futures as they finish (Python's `as_completed`); from
/// [`as_completed`].
///
/// Each item is `Ok(future)`, already done, so its
/// [`result`](TaskFuture::result) returns at once. With a
/// [`timeout`](Self::timeout), an item not done by then comes out as
/// `Err(ExecutorError::Timeout)`, which ends the iterator. `F` is what it
/// was given: owned [`TaskFuture`]s, or `&TaskFuture`s borrowed from a
/// collection that keeps them (so none is lost at a timeout).
pub struct AsCompleted<F> {
    futures: Vec<Option<F>>,
    ready: Arc<Ready>,
    left: usize,
    start: Instant,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl<F> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

/// Yields `futures` as they finish, whatever their order (Python's
/// `concurrent.futures.as_completed`). Futures already done come first.
///
/// It takes owned futures or borrowed ones (`&futures`, or
/// `futures.iter()`): borrowed, the futures still pending after a
/// [`timeout`](AsCompleted::timeout) stay in your collection, as Python's
/// do in its set.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Executor, as_completed};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiprocess::init();
/// let executor = Executor::new(2)?;
/// let futures = (1..=3).map(|x| executor.submit(square, (x,))).collect::<Result<Vec<_>, _>>()?;
/// let mut total = 0;
/// for future in as_completed(futures) {
///     total += future?.result()?;
/// }
/// assert_eq!(total, 14);
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
pub fn as_completed<R, F: Borrow<TaskFuture<R>>>(
    futures: impl IntoIterator<Item = F>,
) -> AsCompleted<F> {
    let ready = Arc::new(Ready {
        queue: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
    });
    let futures: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    for (index, f) in futures.iter().enumerate() {
        let waker = Waker::from(Arc::new(IndexWaker {
            index,
            ready: ready.clone(),
        }));
        if let Some(f) = f {
            f.borrow().shared.listen(waker);
        }
    }
    AsCompleted {
        left: futures.len(),
        futures,
        ready,
        start: Instant::now(),
        deadline: None,
        timed_out: false,
    }
}

impl<F> AsCompleted<F> {
    /// Gives up `timeout` after [`as_completed`] was called (Python's
    /// `timeout=`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiprocess::{Executor, as_completed};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = Executor::new(2)?;
    /// let futures = vec![executor.submit(square, (2,))?];
    /// for future in as_completed(futures).timeout(Duration::from_secs(10)) {
    ///     println!("{}", future?.result()?);
    /// }
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = self.start.checked_add(timeout);
        self
    }
}

impl<F> Iterator for AsCompleted<F> {
    type Item = Result<F, ExecutorError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        let mut queue = lock(&self.ready.queue);
        loop {
            while let Some(index) = queue.pop_front() {
                if let Some(f) = self.futures.get_mut(index).and_then(Option::take) {
                    self.left -= 1;
                    return Some(Ok(f));
                }
            }
            queue = match wait_until(&self.ready.cv, queue, self.deadline) {
                Ok(next) => next,
                Err(_) => {
                    self.timed_out = true;
                    return Some(Err(ExecutorError::Timeout));
                }
            };
        }
    }
}

/// When [`wait_futures`] returns (Python's `FIRST_COMPLETED`,
/// `FIRST_EXCEPTION` and `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done or cancelled.
    FirstCompleted,
    /// As soon as any future fails (an error other than cancellation);
    /// if none does, when all are done.
    FirstException,
    /// When all futures are done or cancelled.
    AllCompleted,
}

/// The futures [`wait_futures`] was given, split by whether they are done
/// (Python's `DoneAndNotDoneFutures`); each side keeps the input order.
/// `F` is what it was given: owned [`TaskFuture`]s or `&TaskFuture`s.
#[derive(Debug)]
pub struct DoneAndNotDone<F> {
    /// The futures that are done or cancelled.
    pub done: Vec<F>,
    /// The others.
    pub not_done: Vec<F>,
}

/// Waits for `futures` until `return_when` holds or `timeout` passes
/// (`None`: no limit), then splits them into done and not done (Python's
/// `concurrent.futures.wait`; named apart from the crate's
/// [`wait`](crate::wait) for connections and processes). Futures that are
/// already done count at once; a timeout is not an error, it simply leaves
/// futures in `not_done`. It takes owned futures or borrowed ones
/// (`&futures`), as [`as_completed`] does.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiprocess::{Executor, ReturnWhen, wait_futures};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// multiprocess::init();
/// let executor = Executor::new(2)?;
/// let futures = vec![executor.submit(nap, (2000,))?, executor.submit(nap, (10,))?];
/// let split = wait_futures(futures, ReturnWhen::FirstCompleted, Some(Duration::from_secs(10)));
/// assert_eq!(split.done.len(), 1);
/// assert_eq!(split.done[0].result()?, 10);
/// assert_eq!(split.not_done.len(), 1);
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
pub fn wait_futures<R, F: Borrow<TaskFuture<R>>>(
    futures: impl IntoIterator<Item = F>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> DoneAndNotDone<F> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let futures: Vec<F> = futures.into_iter().collect();
    let ready = Arc::new(Ready {
        queue: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
    });
    for (index, f) in futures.iter().enumerate() {
        f.borrow().shared.listen(Waker::from(Arc::new(IndexWaker {
            index,
            ready: ready.clone(),
        })));
    }
    let mut done = vec![false; futures.len()];
    let mut left = futures.len();
    let mut queue = lock(&ready.queue);
    // Each future's waker reports its index once; the queue lock is never
    // taken while a future's own lock is held, so looking into a future
    // here cannot deadlock.
    loop {
        let mut failed = false;
        while let Some(index) = queue.pop_front() {
            if let Some(d) = done.get_mut(index).filter(|d| !**d) {
                *d = true;
                left -= 1;
                failed |= futures[index].borrow().failed();
            }
        }
        let enough = match return_when {
            ReturnWhen::FirstCompleted => left < futures.len(),
            ReturnWhen::FirstException => failed || left == 0,
            ReturnWhen::AllCompleted => left == 0,
        };
        if enough || futures.is_empty() {
            break;
        }
        match wait_until(&ready.cv, queue, deadline) {
            Ok(next) => queue = next,
            Err(_) => break,
        }
    }
    // Those that finished after the last look count as done too.
    let mut split = DoneAndNotDone {
        done: Vec::new(),
        not_done: Vec::new(),
    };
    for f in futures {
        if f.borrow().done() {
            split.done.push(f);
        } else {
            split.not_done.push(f);
        }
    }
    split
}

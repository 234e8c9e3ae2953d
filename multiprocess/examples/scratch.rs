use multiprocess::{Process, StartMethod, get_context};
fn sq(n: f64) { println!("Square: {} from {} {:?} parent={:?}", n * n, std::process::id(), multiprocess::current_process().name, multiprocess::parent_process().map(|p| (p.pid(), p.name().to_string()))); }
fn boom() { panic!("kaboom"); }
fn code7() { std::process::exit(7); }
fn err() -> Result<(), String> { Err("bad".into()) }
fn main() {
    multiprocess::init();
    for m in [StartMethod::Spawn, StartMethod::ForkServer, StartMethod::Fork] {
        let ctx = get_context(m);
        let t = std::time::Instant::now();
        let p = ctx.process(sq, (10.0,));
        p.start().unwrap();
        let c = p.join().unwrap();
        println!("{m:?}: code {c} in {:?}", t.elapsed());
        let p = ctx.process(boom, ()); p.start().unwrap(); println!("  boom {:?}", p.join());
        let p = ctx.process(code7, ()); p.start().unwrap(); println!("  code7 {:?}", p.join());
        let p = ctx.process(err, ()); p.start().unwrap(); println!("  err {:?}", p.join());
        let p = ctx.process(|| std::thread::sleep(std::time::Duration::from_secs(10)), ());
        p.start().unwrap(); println!("  alive {}", p.is_alive()); p.terminate().unwrap(); println!("  term {:?} alive {}", p.join(), p.is_alive());
        let t = std::time::Instant::now();
        let ps: Vec<_> = (0..100).map(|_| ctx.process(|| {}, ())).collect();
        for p in &ps { p.start().unwrap(); }
        for p in &ps { assert_eq!(p.join().unwrap(), 0); }
        println!("  100 in {:?}", t.elapsed());
    }
}

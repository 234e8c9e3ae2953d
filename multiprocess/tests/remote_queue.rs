multiprocess::init_before_main!();

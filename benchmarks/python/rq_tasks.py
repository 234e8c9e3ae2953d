"""The job function of rq_bench.py: RQ names jobs by module and function, so
it lives in a module its workers import."""


def square(x):
    return x * x

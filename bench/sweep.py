from bench.report import Report
def b9_sweep(report: Report, scale: object) -> None:
    pass

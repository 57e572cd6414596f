"""What the results say: paired statistics, the run report, the sweep comparison report."""

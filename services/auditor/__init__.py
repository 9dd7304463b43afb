"""The auditor: reads every topic after a run and accounts for every contact."""

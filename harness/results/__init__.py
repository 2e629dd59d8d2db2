"""A run's files read back: a cell's raw files, summary.csv's columns, runs compared
cell by cell, the paired statistics, and what a findings page says about a stream."""

"""Grids of trainings: the sweep, the curves evaluated while a policy trains, and the sweep's report and plots."""

"""Forecasts (ml group): durations, usage and pool demand."""

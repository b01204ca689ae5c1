"""The beat side: what fires on a clock (housekeeping now, cron-scheduled syncs next)."""

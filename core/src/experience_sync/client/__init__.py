"""The instance side: ExperienceSyncManager, the durable outbox and the protocols."""

"""The migration engine: read -> transform -> write at constant memory, with receipts."""

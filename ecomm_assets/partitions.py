import dagster as dg

DEFAULT_START_DATE = "2024-01-01"


def daily_partitions(start_date: str = DEFAULT_START_DATE) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day: an order belongs to the UTC day of its order date."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")

"""Platform: what every domain stands on. Settings, database and the embedded server, migrations,
object storage, the HTTP client, months, local paths, Dagster's instance home, and errors."""

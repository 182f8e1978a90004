"""What a run is given: its settings (``RunConfig``, from TOML and flags) and where INPUT
and OUTPUT are. Every shell reads them; they import nothing above ``ingestion``."""

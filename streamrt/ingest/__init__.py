"""streamrt.ingest: video sources (files, webcams, network streams, pushed frames) as timestamped frames."""

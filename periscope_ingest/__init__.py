"""periscope-ingest: RTMP in, HLS out, every broadcast recorded."""

__version__ = "0.1.0"

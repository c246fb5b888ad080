import sys

from periscope_ingest.cli import main

sys.exit(main())

import sys

from fednlp_bench.cli import main

sys.exit(main())

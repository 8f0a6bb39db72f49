"""python -m torch_plugin.compare"""
import sys

from .cli import main

sys.exit(main())

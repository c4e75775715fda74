import sys

from train.walkforward.run import main

sys.exit(main())

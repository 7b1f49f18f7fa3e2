from clusterprior.cli import main

raise SystemExit(main())

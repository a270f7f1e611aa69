from cascade_gateway.cli import main

raise SystemExit(main())

from wojak.cli import main

raise SystemExit(main())

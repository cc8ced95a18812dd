"""The drivesim scenario editor. Start it with `drivesim ui` or `make ui` (Streamlit on 127.0.0.1);
the page itself is drivesim/editor/page.py, so it can be imported and tested like the rest."""

from drivesim.editor.page import main

main()

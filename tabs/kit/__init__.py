"""What every tab shares, and no tab owns:

- common.py    sample cards, the model picker and card, number formatting (and inputs.py's names, re-exported)
- inputs.py    one error decorator, one prompt check, number parsing and capping, plain_errors for every bad input
- sessions.py  per-user state (models, stop flags, files) kept out of gr.State, and run_jobs
- stream.py    one training stream: jobs in threads, throttled page updates with the time left, a tab's Stop
- registry.py  the share bar every tab registers (links, command line, downloads, report) and app.py's wiring
- links.py, commands.py, exports.py, report.py, lecture.py, course.py  the parts of that share bar

A tab imports from here, never from another tab.
"""

"""IVR call flows as data (INB-11): flow files loaded and validated, calls walked through them.

``loader.py`` reads YAML/JSON flows (``load_flow``, ``load_flows``, ``parse_flow``); ``validate.py``
checks their graph; ``model.py`` holds the frozen steps and ``Flow``; ``engine.py`` is the pure
interpreter the core drives (``IvrSession``; its module docstring is the core's contract);
``errors.py`` has ``FlowError``. Shipped examples: ``edge/data/flows/``; the prompt names they use:
``edge/data/prompts/README.md``.
"""

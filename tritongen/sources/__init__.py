"""Reading each checkpoint kind without running code it carries: zip archives with bounded memory, `.pt2` programs.

`tritongen.checkpoint` tells the kinds apart and loads them; the modules here hold what a kind needs on its own.
"""

"""Training without a web server and without a framework at import time.

The backend contract (`contract`), the handler that finds backends by alias (`backends`), the
learning-rate schedules and the augmentation spec every backend applies, and the vision tasks
(`vision_tasks`: classification today; segmentation and detection next). A framework's own code
lives in a subpackage named for it (`training.torch`), imported by workers only.
"""

"""Jobs: inputs -> protocol -> a recorded run in the die file. One module per job."""

from calib.jobs.form import form_pristine
from calib.jobs.map import MapOptions, load_map, map_die  # noqa: F401 - calib map
from calib.jobs.program import ProgramOptions, program_die
from calib.jobs.run import JobInterrupted, Run, recorded_run
from calib.jobs.targets import PATTERNS, ProgramInputError, Targets, make_targets
from calib.jobs.train import TrainOptions, train_die  # noqa: F401 - calib train

__all__ = ["PATTERNS", "JobInterrupted", "ProgramInputError", "ProgramOptions", "Run",
           "Targets", "form_pristine", "make_targets", "program_die", "recorded_run"]

"""streamrt.gen: the streaming generation engine (block loop over a FrameCache, schedules, prompt switch, v2v, degrade)."""

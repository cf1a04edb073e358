"""Test helpers shared by tests/ and benchmarks/ (not shipped in the wheel): a PulseAudio
virtual microphone, a daemon runner, tiny .tflite fixtures."""

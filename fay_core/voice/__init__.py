"""The voice pipeline: VAD segmentation, ASR, streamed TTS, the playout clock and barge-in.

The engines themselves are plugins (``fay_silero``, ``fay_whisper``, ``fay_piper``, ...), chosen through the
registry. The session's assembly gives a session ears and a voice
(:meth:`fay_core.assembly.Assembly.add_voice`, :mod:`fay_core.voice.pipeline`). Nothing heavy is imported or
loaded until a session needs it.
"""

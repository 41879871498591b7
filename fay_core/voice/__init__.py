"""The voice pipeline: Silero VAD, faster-whisper ASR, streamed TTS, the playout clock and barge-in.

``await attach_voice(session)`` (in :mod:`fay_core.voice.pipeline`) gives a session ears and a voice. Nothing
heavy is imported or loaded until a session needs it.
"""

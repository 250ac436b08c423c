"""Seed 004's audio denoise step (section 2.4.2): speech separation, then ASR similarity decides,
per clip, whether a separated track replaces the original audio.

    rule.py         the decision on transcripts (pure; quotes the paper)
    separators.py   separation models by spec string (`convtasnet:`; plug in MossFormer2 there)
    asr.py          recognisers by spec string (`whisper:`)
    pipeline.py     the Ray Data step over a corpus → chosen wavs, decisions table, new manifest

    python jobs/denoise_audio.py --corpus MER2024/ --out denoised/ \\
        --separator convtasnet:/models/convtasnet-libri2mix.pt --asr whisper:/models/whisper-large-v3?language=zh
"""

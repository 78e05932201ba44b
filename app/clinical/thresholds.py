"""Every clinical cut-off the rules use, in one place (clinical-rules.md sections 3 and 5).

Predicates, the phase, the pain ladder, calcium correction, the timeline's reference lines, the radiotherapy
reader and the card text (template keys of app.clinical.card_values) import these names; nothing else writes a
number.
Look-back windows are deployment settings (`acute_window_days`, `assessment_window_days`) and travel on
PatientFacts; the windows below are the ones the rules fix themselves.
"""

from __future__ import annotations

from datetime import timedelta

# Pain (0-10 numeric rating): severity bands and the rise that counts as worsening (A5, ladder).
PAIN_MODERATE = 4.0             # "pain 4 or more": moderate (below: mild), bone-pain radiotherapy, liver pain
PAIN_SEVERE = 7.0               # 7-10 severe (A5)
PAIN_RISE = 2.0                 # up by 2 or more against the previous score

# Performance status.
ECOG_POOR_MIN, ECOG_POOR_MAX = 3.0, 4.0          # ECOG 3-4: poor (A4, brain: active treatment inappropriate)
ECOG_GOOD_MAX = 2.0                              # brain: stereotactic / surgery for ECOG 0-2
ECOG_WORSENING = 1.0                             # A4: worse by 1 point or more
ECOG_REHAB_ACUTE_MIN = 2.0                       # rehabilitation in the acute phase: ECOG 2+
ECOG_REHAB_STABLE = (1.0, 2.0)                   # rehabilitation in the stable phase: ECOG 1-2
ECOG_HOSPICE = 4.0
KARNOFSKY_POOR_MAX = 40.0                        # Karnofsky 40 or less = ECOG 3-4
KARNOFSKY_GOOD_MIN = 60.0                        # Karnofsky 60+ ~ ECOG 0-2
KARNOFSKY_REHAB_STABLE_MAX = 80.0                # ~ ECOG 1 (stable-phase rehabilitation: Karnofsky 60-80)
KARNOFSKY_WORSENING = 20.0
KARNOFSKY_REHAB_ACUTE_MAX = 60.0                 # ~ ECOG 2+
KARNOFSKY_HOSPICE_MAX = 30.0

# Oxygen saturation (%): below this is hypoxaemia.
SPO2_LOW = 90.0

# Calcium (albumin-corrected when albumin is present): above these; compared in the unit reported.
HYPERCALCAEMIA = {"mmol/L": 2.6, "mg/dL": 10.4}
HYPERCALCAEMIA_SEVERE = {"mmol/L": 3.0, "mg/dL": 12.0}

# Distress screens (latest in the acute window): at or above.
DISTRESS_THERMOMETER = 4.0
PHQ9 = 10.0
GAD7 = 10.0
PHQ2 = 3.0
FATIGUE_SCORE = 4.0            # 0-10 fatigue score

# Renal function: eGFR / creatinine clearance below this within the window = severe impairment (drafts withheld).
RENAL_SEVERE_BELOW = 30.0
RENAL_WINDOW = timedelta(days=90)

# Calcium is corrected with an albumin measured this close to it, to this reference albumin: corrected = total +
# coefficient x (reference - albumin), in the unit the calcium is reported in (albumin in g/L or g/dL to match).
ALBUMIN_PAIRING = timedelta(days=7)
ALBUMIN_REFERENCE = {"mmol/L": 40.0, "mg/dL": 4.0}          # g/L with mmol/L calcium; g/dL with mg/dL
CALCIUM_CORRECTION_PER_ALBUMIN = {"mmol/L": 0.02, "mg/dL": 0.8}

# Weight loss in the assessment window (percent).
WEIGHT_LOSS_PERCENT = 5.0

# Fixed windows from the rules text.
CORD_COMPRESSION_CURRENT = timedelta(days=90)    # an older cord compression with no new sign is history
BONE_RADIOTHERAPY_RECENT = timedelta(days=30)    # bone radiotherapy on record this recently: no new referral
DE_NOVO_POOR_DAYS = 30                           # ECOG 3-4 within 30 days of the first metastasis

# Radiotherapy for painful bone metastases: one fraction of this dose (NICE CG81 1.5.16); the order-time update
# (ActivityDefinition radiotherapy-bone-single-fraction, fractionDose) writes the same dose, a test holds them equal.
BONE_PAIN_SINGLE_FRACTION_GY = 8.0
# A fractionation read from free text beyond these is a misread, not a palliative prescription to act on.
RADIOTHERAPY_MAX_GY_PER_FRACTION = 30.0
RADIOTHERAPY_MAX_TOTAL_GY = 80.0


def ecog_poor(value: float) -> bool:
    return ECOG_POOR_MIN <= value <= ECOG_POOR_MAX


def karnofsky_poor(value: float) -> bool:
    return value <= KARNOFSKY_POOR_MAX

from worker.domain.units import human_duration


def test_durations_read_in_the_unit_that_keeps_them_short():
    assert [human_duration(s) for s in (None, 0.25, 119.9, 210, 7199, 7200, 172_799, 1_929_593.1)] == [
        "-",
        "0.2 s",
        "119.9 s",
        "3.5 min",
        "120.0 min",
        "2.0 h",
        "48.0 h",
        "22.3 d",
    ]

"""Extra-network tags are A1111's: removed from the encoded text where they stand, kept in order."""

from sdfarm.scheduler.extranets import ExtraNetwork, split_extra_networks, strip_extra_networks


def test_tags_leave_the_text_where_they_stood():
    text, tags = split_extra_networks("a castle, <lora:ghibli:0.6>, <hypernet:h:1> night")
    assert text == "a castle, ,  night"
    assert tags == [ExtraNetwork("lora", ("ghibli", "0.6")), ExtraNetwork("hypernet", ("h", "1"))]
    assert tags[0].name == "ghibli"


def test_a_prompt_without_tags_is_unchanged():
    assert split_extra_networks("(cat:1.2) <not a tag> <:x>") == ("(cat:1.2) <not a tag> <:x>", [])
    assert strip_extra_networks("<lora:a:1>cat") == "cat"

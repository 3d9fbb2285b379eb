"""The browser harness itself: the system Chromium opens the login page of a served app."""

from selenium.webdriver.common.by import By

from tests.web.conftest import start_server, wait_for


def test_beyond_localhost_the_page_asks_for_the_token_and_then_lets_the_user_in(settings,
                                                                               browser):
    server, stop = start_server(settings, token="s3cret")
    try:
        browser.get(server.url + "/login?next=/login")
        browser.find_element(By.NAME, "token").send_keys("wrong")
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        error = wait_for(lambda: browser.find_element(By.ID, "login-error"),
                         "the wrong-token message")
        assert "not this server's token" in error.text
        assert browser.get_cookie("sdfarm_token") is None
        browser.find_element(By.NAME, "token").send_keys("s3cret")
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        cookie = wait_for(lambda: browser.get_cookie("sdfarm_token"), "the token cookie")
        assert cookie["value"] == "s3cret" and cookie["httpOnly"]
    finally:
        stop()

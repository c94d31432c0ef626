package api

import "github.com/labstack/echo/v4"

func (s *server) gateways() echo.HandlerFunc { return notImplemented }

func (s *server) gateway() echo.HandlerFunc { return notImplemented }

func (s *server) internalGateway() echo.HandlerFunc { return notImplemented }

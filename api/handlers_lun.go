package api

import "github.com/labstack/echo/v4"

func (s *server) targetLun() echo.HandlerFunc { return notImplemented }

func (s *server) internalTargetLun() echo.HandlerFunc { return notImplemented }

func (s *server) gatewayInfo() echo.HandlerFunc { return notImplemented }

func (s *server) clientLun() echo.HandlerFunc { return notImplemented }

func (s *server) internalClientLun() echo.HandlerFunc { return notImplemented }

func (s *server) clientInfo() echo.HandlerFunc { return notImplemented }

func (s *server) internalClientInfo() echo.HandlerFunc { return notImplemented }
